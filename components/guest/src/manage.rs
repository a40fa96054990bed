//! What the management API's resource groups share: the caller handed over
//! by the `manage` router, SWR-format answers, and the export glue
//! ([`crate::manage_endpoint!`]).

use crate::http::{Incoming, Reply};
use crate::{auth, store};
use berth_domain::OciError;
use berth_domain::iam::records::{self, Tenant};
use berth_domain::iam::signing;
use berth_domain::iam::{PolicyDocument, Principal};
use berth_domain::network::{self, EndpointPolicy, IpInfo};
use berth_domain::swr::SwrError;
use serde::Serialize;
use spin_sdk::wasip3::http::types::Method;

/// The principal the router authenticated (policies arrive as JSON).
pub fn principal(
    tenant: String,
    user: String,
    user_id: String,
    admin: bool,
    policies: &[String],
    access_key: Option<String>,
) -> Principal {
    Principal {
        tenant,
        user,
        user_id,
        admin,
        policies: policies
            .iter()
            .filter_map(|p| serde_json::from_str::<PolicyDocument>(p).ok())
            .collect(),
        access_key,
    }
}

pub fn fault(e: impl std::fmt::Debug) -> SwrError {
    SwrError::internal(format!("storage failure: {e:?}"))
}

pub fn oci_fault(e: OciError) -> SwrError {
    SwrError::internal(e.message)
}

pub fn ok_json<T: Serialize>(status: u16, v: &T) -> Result<Reply, SwrError> {
    Ok(Reply::json(
        status,
        serde_json::to_vec(v).expect("responses serialize"),
    ))
}

pub fn error_reply(e: &SwrError) -> Reply {
    Reply::json(e.status, e.body())
}

/// The `limit` query parameter of a listing: 1 to `max`, `default` when
/// absent; 400 otherwise.
pub fn limit_param(req: &Incoming, default: u32, max: u32) -> Result<u32, SwrError> {
    match req.query("limit") {
        None => Ok(default),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                SwrError::bad_request(format!("limit must be a number from 1 to {max}"))
            }),
    }
}

pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SwrError> {
    serde_json::from_slice(body).map_err(|e| SwrError::bad_request(format!("invalid body: {e}")))
}

/// Checks the request's AK/SK signature (`SDK-HMAC-SHA256`, as the
/// official SDKs sign; `authority` is the request's `Host`); the principal
/// it names and the access key that signed. 401 for a missing, malformed,
/// expired or wrong signature or an unknown or disabled key; 403 for an
/// `X-Project-Id` that is not the key's tenant's. A signed change
/// (`mutating`) is carried out once: see [`claim_once`].
pub async fn authenticate(
    req: &Incoming,
    authority: Option<&str>,
    body: &[u8],
    mutating: bool,
) -> Result<(Principal, String), SwrError> {
    let value = req
        .header("authorization")
        .ok_or_else(|| SwrError::unauthorized(signing::SignError::Missing.to_string()))?;
    let parsed =
        signing::parse_authorization(&value).map_err(|e| SwrError::unauthorized(e.to_string()))?;
    let fault = |e: berth_domain::OciError| SwrError::internal(e.message);
    let (key, sk) = auth::access_key(&parsed.access)
        .await
        .map_err(fault)?
        .ok_or_else(|| SwrError::unauthorized("unknown or disabled access key"))?;
    // `Host` never reaches a component (wasi:http forbids it): the host
    // passes it as the request's authority.
    let mut headers = req.header_pairs();
    if let Some(a) = authority {
        headers.push(("host".into(), a.to_string()));
    }
    let query = req.raw_query();
    let signed = signing::Request {
        method: method_name(&req.method),
        path: &req.path,
        query: &query,
        headers: &headers,
        body,
    };
    let signed_at = signing::verify(&signed, &parsed, sk.as_bytes(), store::now())
        .map_err(|e| SwrError::unauthorized(e.to_string()))?;
    if mutating {
        claim_once(signed_at, &parsed.signature).await?;
    }
    // A project id, when given, must be the key's tenant's.
    if let Some(project) = req.header("x-project-id") {
        let tenant = store::get_json::<Tenant>(&records::tenant(&key.tenant))
            .await
            .map_err(fault)?;
        if tenant.is_none_or(|t| t.project_id != project) {
            return Err(SwrError::forbidden(format!(
                "project {project} is not the access key's project"
            )));
        }
    }
    let p = auth::principal(&key.tenant, &key.user)
        .await
        .map_err(fault)?
        .ok_or_else(|| SwrError::unauthorized("the access key's user is disabled or gone"))?;
    network_allowed(&p.tenant, req).await?;
    Ok((p, key.ak))
}

/// The user a console session cookie names, for a request without
/// `Authorization` (`crate::session`), held to its tenant's endpoint
/// policy; `None` without a session cookie. 401 for an ended or expired
/// session, 403 for a change without its CSRF token.
pub async fn session_principal(req: &Incoming) -> Result<Option<Principal>, SwrError> {
    use crate::session::Refusal;
    match crate::session::of_request(req).await {
        Ok(Some(p)) => {
            network_allowed(&p.tenant, req).await?;
            Ok(Some(p))
        }
        Ok(None) => Ok(None),
        Err(r @ Refusal::Invalid(_)) => Err(SwrError::unauthorized(r.message())),
        Err(r @ Refusal::Csrf) => Err(SwrError::forbidden(r.message())),
        Err(Refusal::Fault(e)) => Err(oci_fault(e)),
    }
}

/// 403 unless `tenant`'s endpoint policy lets the request's address in
/// (`berth_domain::network`).
pub async fn network_allowed(tenant: &str, req: &Incoming) -> Result<(), SwrError> {
    auth::network_allows(tenant, req)
        .await
        .map_err(oci_fault)?
        .map_err(SwrError::forbidden)
}

/// `tenant`'s endpoint policy (the default, open to all, when none is set).
pub async fn endpoint_policy(tenant: &str) -> Result<EndpointPolicy, SwrError> {
    Ok(
        store::get_json::<EndpointPolicy>(&network::policy_key(tenant))
            .await
            .map_err(oci_fault)?
            .unwrap_or_default(),
    )
}

/// Changes `tenant`'s endpoint policy: its status (`enabled`) and/or its
/// allow list (checked by `berth_domain::network::validate_list`). Instances
/// apply it within seconds (they trust a policy that long). The policy
/// after the change.
pub async fn update_endpoint_policy(
    tenant: &str,
    enabled: Option<bool>,
    ip_list: Option<Vec<IpInfo>>,
) -> Result<EndpointPolicy, SwrError> {
    let ip_list = ip_list.map(network::validate_list).transpose()?;
    let key = network::policy_key(tenant);
    // Versioned, so a status change and a list change made at once both stay.
    for _ in 0..5 {
        let current = store::metadata::get(key.clone()).await.map_err(fault)?;
        let (mut policy, precondition) = match &current {
            Some(e) => (
                serde_json::from_slice::<EndpointPolicy>(&e.value).unwrap_or_default(),
                store::Precondition::Version(e.version),
            ),
            None => (EndpointPolicy::default(), store::Precondition::Absent),
        };
        if let Some(e) = enabled {
            policy.enabled = e;
        }
        if let Some(l) = &ip_list {
            policy.ip_list = l.clone();
        }
        let value = serde_json::to_vec(&policy).expect("policies serialize");
        match store::commit(vec![store::WriteOp::Put((
            key.clone(),
            value,
            precondition,
        ))])
        .await
        {
            Ok(_) => return Ok(policy),
            Err(store::StoreError::Conflict) => continue,
            Err(e) => return Err(fault(e)),
        }
    }
    Err(SwrError::conflict(
        "the endpoint policy is being changed by another request; try again",
    ))
}

/// The replay defence: a signed change is accepted once. Its signature
/// (which covers method, path, query, signed headers, body and
/// `X-Sdk-Date`) is recorded under `iam/signed/<date>/…` in the same commit
/// that checks it is new; a second arrival within the 15-minute skew window
/// is refused, and after it the date check refuses it anyway. Reads are not
/// recorded (replaying one changes nothing, and clients poll). Records past
/// the window are removed a few at a time by later claims. The claim stays
/// whatever the change's outcome: a captured request that failed must not
/// succeed later on someone else's behalf (and hand them its answer, such
/// as a new secret key). The official SDKs sign a fresh `X-Sdk-Date` per
/// call, so only byte-identical changes sent within the same second
/// collide; they get 409 like any duplicate.
async fn claim_once(signed_at: u64, signature: &str) -> Result<(), SwrError> {
    use crate::store::{Precondition, StoreError, WriteOp, metadata};
    let fault = |e: StoreError| SwrError::internal(format!("storage failure: {e:?}"));
    let now = store::now();
    let stale = metadata::scan(records::SIGNED.to_string(), None, 16)
        .await
        .map_err(fault)?;
    let mut ops = vec![WriteOp::Put((
        records::signed_request(&signing::format_sdk_date(signed_at), signature),
        Vec::new(),
        Precondition::Absent,
    ))];
    ops.extend(
        stale
            .into_iter()
            .filter(|e| signing::replay_record_expired(&e.key, now))
            .map(|e| store::delete(e.key)),
    );
    match store::commit(ops).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict) => Err(SwrError::replayed()),
        Err(e) => Err(fault(e)),
    }
}

/// Records a management change in `tenant`'s audit log (a failure to
/// record is logged, and does not undo the change).
pub async fn audit(
    tenant: &str,
    user: String,
    operation: String,
    resource: String,
    status: u16,
    source: String,
) {
    crate::audit::record(records::AuditEvent {
        time: store::now(),
        tenant: tenant.to_string(),
        user,
        operation,
        resource,
        status,
        source,
    })
    .await;
}

/// Whether `who` may do `action` on organization `ns` (its policies,
/// rules): its tenant owns it and `who` may see it (else 404, as for any
/// other tenant's) and its policies allow `action` there (else 403). The
/// organization's numeric id.
pub async fn organization_allowed(
    who: &Principal,
    ns: &str,
    action: berth_domain::iam::Action,
) -> Result<u64, SwrError> {
    use berth_domain::iam::{self, Action};
    let facts = auth::namespace_facts(Some(who), ns)
        .await
        .map_err(oci_fault)?;
    if facts.owner.as_deref() != Some(who.tenant.as_str()) {
        return Err(SwrError::not_found(format!("namespace {ns} not found")));
    }
    let resource = iam::action::namespace_resource(ns);
    // What the caller may not even see is not found, as elsewhere.
    if !iam::decide(Some(who), Action::GetNamespace, &resource, &facts) {
        return Err(SwrError::not_found(format!("namespace {ns} not found")));
    }
    if !iam::decide(Some(who), action, &resource, &facts) {
        return Err(SwrError::forbidden(format!(
            "{} may not do {} in {ns}",
            who.user,
            action.name()
        )));
    }
    let record = store::get_json::<records::Namespace>(&records::namespace(ns))
        .await
        .map_err(oci_fault)?;
    Ok(record.map(|n| n.id).unwrap_or_default())
}

/// Whether `who` may manage the triggers and webhooks of organization
/// `ns` (`swr:repository:trigger`; see [`organization_allowed`]).
pub async fn trigger_allowed(who: &Principal, ns: &str) -> Result<u64, SwrError> {
    organization_allowed(who, ns, berth_domain::iam::Action::Trigger).await
}

/// Commits `ops`; a failed precondition (a concurrent change, or a record
/// that exists already) is a 409 saying `conflict`.
pub async fn commit(
    ops: Vec<store::WriteOp>,
    conflict: impl FnOnce() -> String,
) -> Result<(), SwrError> {
    match store::commit(ops).await {
        Ok(_) => Ok(()),
        Err(store::StoreError::Conflict) => Err(SwrError::conflict(conflict())),
        Err(e) => Err(fault(e)),
    }
}

/// `n` (at least 1) fresh ids from `counter` (`count/…` keys).
pub async fn ids(counter: &str, n: usize) -> Result<std::ops::RangeInclusive<u64>, SwrError> {
    let n = n.max(1) as u64;
    let last = store::metadata::increment(counter.to_string(), n as i64)
        .await
        .map_err(fault)? as u64;
    Ok(last + 1 - n..=last)
}

/// `limit`, `offset` and `order` of a shared-edition listing, given as
/// query parameters or as SWR's `filter=limit::N|offset::M|order::desc`;
/// limit 1–`max` (default `default`), order `desc` (the default) or `asc`.
pub fn filter_page(
    req: &Incoming,
    default: usize,
    max: usize,
) -> Result<(usize, usize, bool), SwrError> {
    let mut limit = req.query("limit").map(str::to_string);
    let mut offset = req.query("offset").map(str::to_string);
    let mut order = req.query("order").map(str::to_string);
    if let Some(f) = req.query("filter") {
        for part in f.split('|') {
            match part.split_once("::") {
                Some(("limit", v)) => limit = Some(v.into()),
                Some(("offset", v)) => offset = Some(v.into()),
                Some(("order", v)) => order = Some(v.into()),
                _ => {}
            }
        }
    }
    let number = |v: Option<String>, what: &str, default: usize| -> Result<usize, SwrError> {
        v.map(|v| {
            v.parse::<usize>()
                .map_err(|_| SwrError::bad_request(format!("{what} must be a number")))
        })
        .transpose()
        .map(|n| n.unwrap_or(default))
    };
    let limit = number(limit, "limit", default)?;
    if !(1..=max).contains(&limit) {
        return Err(SwrError::bad_request(format!(
            "limit must be from 1 to {max}"
        )));
    }
    let offset = number(offset, "offset", 0)?;
    let desc = match order.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(SwrError::bad_request(format!(
                "order {other:?}: desc or asc"
            )));
        }
    };
    Ok((limit, offset, desc))
}

/// RFC 9110 §14.4 `Content-Range` of `rows` rows from `offset` of
/// `total`: `first-last/total`, or `*/total` for none.
pub fn content_range(offset: usize, rows: usize, total: usize) -> String {
    match rows {
        0 => format!("*/{total}"),
        n => format!("{offset}-{}/{total}", offset + n - 1),
    }
}

/// The method's name as signatures and audit records spell it.
pub fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        _ => "OTHER",
    }
}

/// Generates a resource group's bindings and exports `serve(req, body, who)`
/// as its `handle`.
#[macro_export]
macro_rules! manage_endpoint {
    ($world:literal, $iface:ident, $serve:path) => {
        $crate::world_bindings!($world);

        impl exports::berth::registry::$iface::Guest for Endpoint {
            async fn handle(
                request: ::spin_sdk::wasip3::http::types::Request,
                body: Vec<u8>,
                caller: exports::berth::registry::management_types::Caller,
            ) -> Result<
                ::spin_sdk::wasip3::http::types::Response,
                ::spin_sdk::wasip3::http::types::ErrorCode,
            > {
                let req = ::berth_guest::http::Incoming::new(request);
                let who = ::berth_guest::manage::principal(
                    caller.tenant,
                    caller.user,
                    caller.user_id,
                    caller.admin,
                    &caller.policies,
                    caller.access_key,
                );
                let reply = match $serve(&req, &body, &who).await {
                    Ok(r) => r,
                    Err(e) => ::berth_guest::manage::error_reply(&e),
                };
                Ok(reply.into_response(req))
            }
        }
    };
}

/// Read / edit / manage grants to users, on an organization or a
/// repository (SWR's `…/access` resources).
pub mod grants {
    use super::{fault, oci_fault, parse_body};
    use crate::store::{self, metadata};
    use berth_domain::iam::records::{self, Grant};
    use berth_domain::iam::{Level, Principal};
    use berth_domain::swr::SwrError;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct UserAuth {
        pub user_id: String,
        pub user_name: String,
        pub auth: u8,
    }

    impl UserAuth {
        pub fn of(who: &Principal, level: Option<Level>) -> UserAuth {
            UserAuth {
                user_id: who.user_id.clone(),
                user_name: who.user.clone(),
                auth: level.map(Level::code).unwrap_or(0),
            }
        }
    }

    /// Stores the grants in `body` (`[UserAuth]`) under `key(user id)`;
    /// with `update`, each must exist already. Users must be of the
    /// caller's tenant.
    pub async fn write(
        who: &Principal,
        body: &[u8],
        update: bool,
        key: impl Fn(&str) -> String,
    ) -> Result<(), SwrError> {
        let users: Vec<UserAuth> = parse_body(body)?;
        if users.is_empty() {
            return Err(SwrError::bad_request("no users given"));
        }
        let mut ops = Vec::new();
        for u in users {
            let level = Level::try_from(u.auth).map_err(SwrError::bad_request)?;
            let owner: Option<String> = store::get_json(&records::user_id(&u.user_id))
                .await
                .map_err(oci_fault)?;
            let name = match owner.as_deref().and_then(|o| o.split_once('/')) {
                Some((tenant, name)) if tenant == who.tenant => name.to_string(),
                _ => {
                    return Err(SwrError::bad_request(format!(
                        "no user with id {}",
                        u.user_id
                    )));
                }
            };
            let k = key(&u.user_id);
            if update && !store::exists(&k).await.map_err(oci_fault)? {
                return Err(SwrError::not_found(format!(
                    "user {} has no permission here to update",
                    u.user_id
                )));
            }
            ops.push(store::put_json(
                k,
                &Grant {
                    user_id: u.user_id,
                    user_name: name,
                    level,
                },
            ));
        }
        store::commit(ops).await.map_err(fault)?;
        Ok(())
    }

    /// Grants under `prefix`, except the caller's own.
    pub async fn others(who: &Principal, prefix: &str) -> Result<Vec<UserAuth>, SwrError> {
        let mut out = Vec::new();
        for e in metadata::scan(prefix.to_string(), None, 10_000)
            .await
            .map_err(fault)?
        {
            if let Ok(g) = serde_json::from_slice::<Grant>(&e.value)
                && g.user_id != who.user_id
            {
                out.push(UserAuth {
                    user_id: g.user_id,
                    user_name: g.user_name,
                    auth: g.level.code(),
                });
            }
        }
        Ok(out)
    }

    /// Removes the grants of the user ids in `body` (`[string]`).
    pub async fn delete(body: &[u8], key: impl Fn(&str) -> String) -> Result<(), SwrError> {
        let ids: Vec<String> = parse_body(body)?;
        let ops = ids.iter().map(|id| store::delete(key(id))).collect();
        store::commit(ops).await.map_err(fault)?;
        Ok(())
    }
}
