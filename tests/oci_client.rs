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

/// SWR's long-term login password: hex HMAC-SHA256 of the AK keyed by the SK.
fn long_term_password(ak: &str, sk: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(ak.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A temporary login from `POST /v2/manage/utils/secret`, signed as the
/// Huawei Cloud SDKs sign (SDK-HMAC-SHA256 over the canonical request).
fn temporary_login(berth: &Berth, ak: &str, sk: &str) -> (String, String) {
    use berth_domain::iam::signing;
    use std::time::{SystemTime, UNIX_EPOCH};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let date = signing::format_sdk_date(now);
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), berth.addr.clone()),
        ("x-sdk-date".to_string(), date.clone()),
    ];
    let signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    let path = "/v2/manage/utils/secret";
    let req = signing::Request {
        method: "POST",
        path,
        query: "",
        headers: &headers,
        body: b"",
    };
    let canonical = signing::canonical_request(&req, &signed).unwrap();
    let signature = signing::hmac_hex(
        sk.as_bytes(),
        signing::string_to_sign(&canonical, &date).as_bytes(),
    );
    let mut send: Vec<(String, String)> =
        headers.into_iter().filter(|(k, _)| k != "host").collect();
    send.push((
        "Authorization".into(),
        format!(
            "SDK-HMAC-SHA256 Access={ak}, SignedHeaders={}, Signature={signature}",
            signed.join(";")
        ),
    ));
    let (status, body) = berth.http("POST", path, &send);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let auth = v["auths"][&berth.addr]["auth"].as_str().unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap();
    let (user, password) = std::str::from_utf8(&decoded)
        .unwrap()
        .split_once(':')
        .unwrap();
    (user.to_string(), password.to_string())
}

/// oci-client logs in with each kind of credential (a user's password,
/// SWR's long-term AK login, a temporary login key), pushes and pulls; a
/// wrong password and anonymous pulls of private images are refused.
#[tokio::test]
async fn each_credential_kind() {
    let berth = Berth::start();
    berth.iam(&["tenant-create", "acme", "--password", "acme-pw"]);
    berth.iam(&[
        "user-create",
        "acme",
        "dev",
        "--password",
        "dev-pw",
        "--policy",
        "SWR OperateAccess",
    ]);
    let key = berth.iam(&["key-create", "acme", "acme"]);
    let (ak, sk) = (&key["ak"], &key["sk"]);
    let temporary = temporary_login(&berth, ak, sk);
    let kinds = [
        ("password", ("dev@acme".to_string(), "dev-pw".to_string())),
        (
            "long-term",
            (format!("berth@{ak}"), long_term_password(ak, sk)),
        ),
        ("temporary", temporary),
    ];
    let c = client();
    let config = || Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    for (kind, (user, password)) in kinds {
        let auth = RegistryAuth::Basic(user.clone(), password.clone());
        let image: Reference = format!("{}/oci-{kind}/app:v1", berth.addr).parse().unwrap();
        let layer = ImageLayer::oci_v1_gzip(format!("pushed with {kind}").into_bytes(), None);
        c.push(&image, std::slice::from_ref(&layer), config(), &auth, None)
            .await
            .unwrap_or_else(|e| panic!("push with {kind}: {e}"));
        let pulled = client()
            .pull(
                &image,
                &auth,
                vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE],
            )
            .await
            .unwrap_or_else(|e| panic!("pull with {kind}: {e}"));
        assert_eq!(pulled.layers[0].data, layer.data, "{kind}");
        let wrong = RegistryAuth::Basic(user, format!("{password}x"));
        assert!(
            client()
                .pull(
                    &image,
                    &wrong,
                    vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE]
                )
                .await
                .is_err(),
            "{kind}"
        );
        let anonymous = client()
            .pull(
                &image,
                &RegistryAuth::Anonymous,
                vec![oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE],
            )
            .await;
        assert!(
            anonymous.is_err(),
            "{kind}: anonymous pull of a private image"
        );
    }
}
