//! The instance's network access control (`berth_domain::network`), as
//! SWR enterprise's endpoint policy (huaweicloudsdkswr v2):
//!
//! - `GET /v2/{project_id}/instances/{instance_id}/endpoint-policy`
//!   (`ShowInstanceEndpointPolicy`): `{"status": "Enable"|"Disable", "ip_list": [IpInfo]}`;
//! - `PUT …/endpoint-policy` (`UpdateInstanceEndpointPolicy`, body
//!   `{"ip_list": [{"ip", "description"}]}`): replaces the allow list;
//! - `POST …/endpoint-policy` (`CreateInstanceEndpointPolicy`, body
//!   `{"enable": bool}`): opens or closes access from outside the
//!   internal networks.
//!
//! For the tenant's administrators; changes apply within seconds.

use crate::Call;
use berth_domain::iam::admin;
use berth_domain::network::IpInfo;
use berth_domain::swr::SwrError;
use berth_guest::http::Reply;
use berth_guest::manage::{endpoint_policy, ok_json, parse_body, update_endpoint_policy};
use serde::Deserialize;

fn administrators_only(call: &Call<'_>) -> Result<(), SwrError> {
    if admin::may_administer(&call.who, &call.tenant.name) {
        Ok(())
    } else {
        Err(SwrError::forbidden(
            "only the tenant's administrators manage its endpoint policy",
        ))
    }
}

pub async fn show(call: &Call<'_>) -> Result<Reply, SwrError> {
    administrators_only(call)?;
    ok_json(200, &endpoint_policy(&call.tenant.name).await?.view())
}

/// SWR's `UpdateWhiteListRequestBody`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhiteList {
    ip_list: Vec<IpInfo>,
}

/// Changes, also refused to a console session signed in with a docker
/// login key (a leaked CI login must not open or close the instance).
fn may_change(call: &Call<'_>) -> Result<(), SwrError> {
    administrators_only(call)?;
    if call.login_key_session {
        return Err(SwrError::forbidden(
            "a console session signed in with a docker login key does not change the endpoint policy",
        ));
    }
    Ok(())
}

pub async fn update(call: &Call<'_>) -> Result<Reply, SwrError> {
    may_change(call)?;
    let body: WhiteList = parse_body(&call.body)?;
    update_endpoint_policy(&call.tenant.name, None, Some(body.ip_list)).await?;
    ok_json(200, &serde_json::json!({}))
}

/// SWR's `CreateEndpointPolicyRequestBody`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enable {
    enable: bool,
}

pub async fn enable(call: &Call<'_>) -> Result<Reply, SwrError> {
    may_change(call)?;
    let body: Enable = parse_body(&call.body)?;
    update_endpoint_policy(&call.tenant.name, Some(body.enable), None).await?;
    ok_json(200, &serde_json::json!({}))
}
