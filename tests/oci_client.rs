//! Round trips with the Rust `oci-client` against the real host: a
//! multi-layer image, tag listing, and an artifact found through the
//! referrers API.

use berth_tests::{ADMIN, Berth};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::Digest;

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

#[tokio::test]
async fn push_pull_tags_and_referrers() {
    let berth = Berth::start();
    let c = client();
    // Basic credentials: oci-client trades them for a Bearer token at the
    // realm the registry's challenge names.
    let auth = RegistryAuth::Basic(ADMIN.0.into(), ADMIN.1.into());
    let image: Reference = format!("{}/rust/app:v1", berth.addr).parse().unwrap();

    let layers: Vec<ImageLayer> = (0..3u8)
        .map(|i| ImageLayer::oci_v1_gzip(vec![i; 100_000 + i as usize], None))
        .collect();
    let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    let pushed = c
        .push(&image, &layers, config, &auth, None)
        .await
        .expect("push");
    assert!(pushed.manifest_url.contains("/v2/rust/app/manifests/"));

    let pulled = c
        .pull(
            &image,
            &auth,
            vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .expect("pull");
    // oci-client fetches layers concurrently and may return them in any order.
    let mut got: Vec<String> = pulled.layers.iter().map(|l| digest(&l.data)).collect();
    let mut want: Vec<String> = layers.iter().map(|l| digest(&l.data)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let image_digest = pulled.digest.clone().expect("digest");

    let tags = c.list_tags(&image, &auth, None, None).await.expect("tags");
    assert_eq!(tags.tags, vec!["v1"]);

    // An SBOM referring to the image, pushed by digest.
    let empty = b"{}".to_vec();
    let empty_desc = c
        .push_blob(&image, empty.clone(), &digest(&empty))
        .await
        .expect("push empty config");
    assert!(empty_desc.contains(&digest(&empty)));
    let (manifest_bytes, _) = c
        .pull_manifest_raw(&image, &auth, &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE])
        .await
        .unwrap();
    let sbom = OciImageManifest {
        artifact_type: Some("application/spdx+json".into()),
        config: OciDescriptor {
            media_type: "application/vnd.oci.empty.v1+json".into(),
            digest: digest(&empty),
            size: 2,
            ..Default::default()
        },
        layers: vec![],
        subject: Some(OciDescriptor {
            media_type: oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into(),
            digest: image_digest.clone(),
            size: manifest_bytes.len() as i64,
            ..Default::default()
        }),
        ..Default::default()
    };
    let sbom_ref: Reference = format!("{}/rust/app:sbom", berth.addr).parse().unwrap();
    let location = c
        .push_manifest(&sbom_ref, &OciManifest::Image(sbom))
        .await
        .expect("push sbom");

    let subject: Reference = format!("{}/rust/app@{}", berth.addr, image_digest)
        .parse()
        .unwrap();
    let index = c
        .pull_referrers(&subject, Some("application/spdx+json"))
        .await
        .expect("referrers");
    assert_eq!(index.manifests.len(), 1);
    assert!(location.ends_with(&format!(
        "/v2/rust/app/manifests/{}",
        index.manifests[0].digest
    )));
    assert_eq!(
        index.manifests[0].artifact_type.as_deref(),
        Some("application/spdx+json")
    );
    let none = c
        .pull_referrers(&subject, Some("application/vnd.other"))
        .await
        .expect("referrers");
    assert!(none.manifests.is_empty());
}
