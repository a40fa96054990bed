//! The caller's account, as SWR's management API serves it:
//!
//! - `POST /v2/manage/utils/secret` and `…/utils/authorizationtoken`:
//!   a temporary docker login (`{region}@{key id}` and a signed key valid
//!   for 6 hours), as the `auths` of a docker config and as a ready
//!   `docker login` command in `X-Swr-Dockerlogin`
//! - `GET /v2/manage/projects/<project id>/quotas`: organizations quota and use

use base64::Engine;
use berth_domain::iam::Principal;
use berth_domain::iam::docker::RegistryClaims;
use berth_domain::iam::records::{self, Tenant};
use berth_domain::swr::{self, SwrError};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{fault, oci_fault, ok_json};
use berth_guest::{namespaces, store};
use spin_sdk::wasip3::http::types::Method;

berth_guest::manage_endpoint!("berth:registry/account-endpoint", account_api, serve);

/// Temporary login keys last 6 hours unless `duration_seconds` asks for
/// 15 minutes to 24 hours, as SWR allows.
const LOGIN_TTL: u32 = 6 * 3600;
const LOGIN_TTL_RANGE: std::ops::RangeInclusive<u32> = 900..=86_400;

async fn serve(req: &Incoming, _body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let segs: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(3).collect();
    match (segs.as_slice(), &req.method) {
        (["utils", "secret" | "authorizationtoken"], Method::Post) => login_secret(req, who),
        (["projects", project, "quotas"], Method::Get) => quotas(project, who).await,
        _ => Err(SwrError::method_not_allowed()),
    }
}

fn login_secret(req: &Incoming, who: &Principal) -> Result<Reply, SwrError> {
    let ttl = match req.query("duration_seconds") {
        None => LOGIN_TTL,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|s| LOGIN_TTL_RANGE.contains(s))
            .ok_or_else(|| {
                SwrError::bad_request(format!(
                    "duration_seconds must be a number of seconds from 900 (15 minutes) to 86400 (24 hours), not {v:?}"
                ))
            })?,
    };
    let region = store::config::get("region")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "berth".into());
    // A key id of the long-term form, so clients treat both alike; only
    // the signed key proves anything.
    let ak = format!("T{}", store::nonce().to_uppercase())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>();
    let ak = format!("{ak:0<20}");
    let claims = RegistryClaims {
        kind: "login".into(),
        tenant: who.tenant.clone(),
        sub: who.user.clone(),
        uid: who.user_id.clone(),
        access: Vec::new(),
        ak: Some(ak.clone()),
        key: who.access_key.clone(),
    };
    let secret = store::credentials::issue_token(
        &serde_json::to_string(&claims).expect("claims serialize"),
        ttl,
    );
    if secret.is_empty() {
        return Err(SwrError::internal("the host could not sign a login key"));
    }
    let host = req
        .authority
        .clone()
        .unwrap_or_else(|| "localhost:5000".into());
    let user = format!("{region}@{ak}");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let expires = swr::rfc3339(store::now() + u64::from(ttl));
    let body = serde_json::json!({ "auths": { host.clone(): { "auth": auth } } });
    Ok(ok_json(200, &body)?
        .header(
            "x-swr-dockerlogin",
            format!("docker login -u {user} -p {secret} {host}"),
        )
        .header("x-swr-expireat", expires))
}

async fn quotas(project: &str, who: &Principal) -> Result<Reply, SwrError> {
    let tenant = store::get_json::<Tenant>(&records::tenant(&who.tenant))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::internal("the caller's tenant is gone"))?;
    if tenant.project_id != project {
        return Err(SwrError::forbidden(format!(
            "project {project} is not the caller's project"
        )));
    }
    let created = namespaces::owned(&who.tenant)
        .await
        .map_err(fault)?
        .iter()
        .filter(|n| n.creator == who.user)
        .count();
    ok_json(
        200,
        &serde_json::json!({ "quotas": [{
            "quota_key": "namespace",
            "quota_limit": namespaces::quota(),
            "used": created,
            "unit": "",
        }]}),
    )
}
