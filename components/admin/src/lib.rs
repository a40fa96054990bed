//! Berth's admin API: tenants, IAM users, groups, custom policies and
//! access keys, over HTTP (the `berth iam` CLI does the same offline).
//! Who may do what, and what each change writes, is
//! `berth_domain::iam::admin`; this component reads and writes.
//!
//! Under `/berth/v1` (JSON bodies, SWR-format errors; authenticated by the
//! `manage` router with an AK/SK signature or `Basic user@tenant:password`):
//!
//! - `GET /whoami`
//! - `GET|POST /tenants`, `GET /tenants/<t>` (the system tenant's administrators)
//! - `GET|POST /tenants/<t>/users`, `GET|PATCH|DELETE /tenants/<t>/users/<u>`
//! - `GET|POST /tenants/<t>/groups`, `GET|PATCH|DELETE /tenants/<t>/groups/<g>`
//! - `GET|POST /tenants/<t>/policies`, `GET|PUT|DELETE /tenants/<t>/policies/<p>`
//! - `GET|POST /tenants/<t>/users/<u>/keys`, `PATCH|DELETE /tenants/<t>/users/<u>/keys/<ak>`
//! - `GET|POST /tenants/<t>/clusters`, `GET|DELETE /tenants/<t>/clusters/<id>`:
//!   Kubernetes clusters for image triggers ([`clusters`])
//! - `GET /events?after=<id>&limit=<n>` (the event log, oldest first; the
//!   system tenant's administrators)
//! - `GET /tenants/<t>/audit?since=&until=&user=&operation=&resource_type=&resource=&status=&limit=&before=`:
//!   the tenant's audit log, newest first ([`list_audit`])
//! - `GET|PUT /tenants/<t>/endpoint-policy`: the tenant's network access
//!   control (`{"status": "Enable"|"Disable", "ip_list": [{"ip", "description"}]}`;
//!   a PUT of `{"enabled"?, "ip_list"?}`), also for the system tenant's
//!   administrators, who can open a tenant that locked itself out
//! - `GET /webhooks/<policy>/deliveries`, `POST …/deliveries/<event>/redeliver`
//!   (a webhook policy's delivery log, and redelivery: [`webhooks`])
//!
//! A tenant's administrators manage its identities; every user manages
//! its own password and access keys. Secrets (generated passwords, SKs)
//! are in the creating response only.

use berth_domain::iam::Principal;
use berth_domain::iam::admin::{self, AdminError, KeyView, UserView, Write};
use berth_domain::iam::records::{self, AccessKey, CustomPolicy, Group, Tenant, User};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{fault, oci_fault, ok_json, parse_body};
use berth_guest::store::{self, Precondition, StoreError, WriteOp, credentials};
use serde::Deserialize;
use serde_json::json;
use spin_sdk::wasip3::http::types::Method;

mod clusters;
mod webhooks;

berth_guest::manage_endpoint!("berth:registry/admin-endpoint", admin_api, serve);

async fn serve(req: &Incoming, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let segs: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(3).collect();
    match (segs.as_slice(), &req.method) {
        (["whoami"], Method::Get) => whoami(who).await,
        (["events"], Method::Get) => list_events(req, who).await,
        (["webhooks", p, "deliveries"], Method::Get) => webhooks::deliveries(req, who, p).await,
        (["webhooks", p, "deliveries", e, "redeliver"], Method::Post) => {
            webhooks::redeliver(who, p, e).await
        }
        (["tenants"], Method::Get) => list_tenants(who).await,
        (["tenants"], Method::Post) => create_tenant(who, body).await,
        (["tenants", t], Method::Get) => show_tenant(who, t).await,
        (["tenants", t, "audit"], Method::Get) => list_audit(req, who, t).await,
        (["tenants", t, "endpoint-policy"], Method::Get) => {
            administered(who, t).await?;
            ok_json(200, &berth_guest::manage::endpoint_policy(t).await?.view())
        }
        (["tenants", t, "endpoint-policy"], Method::Put) => {
            update_endpoint_policy(who, t, body).await
        }
        (["tenants", t, "users"], Method::Get) => list_users(who, t).await,
        (["tenants", t, "users"], Method::Post) => create_user(who, t, body).await,
        (["tenants", t, "users", u], m) => user(who, t, u, m, body).await,
        (["tenants", t, "users", u, "keys"], Method::Get) => list_keys(who, t, u).await,
        (["tenants", t, "users", u, "keys"], Method::Post) => create_key(who, t, u, body).await,
        (["tenants", t, "users", u, "keys", ak], m) => key(who, t, u, ak, m, body).await,
        (["tenants", t, "groups"], Method::Get) => list_groups(who, t).await,
        (["tenants", t, "groups"], Method::Post) => create_group(who, t, body).await,
        (["tenants", t, "groups", g], m) => group(who, t, g, m, body).await,
        (["tenants", t, "clusters"], Method::Get) => clusters::list(who, t).await,
        (["tenants", t, "clusters"], Method::Post) => clusters::create(who, t, body).await,
        (["tenants", t, "clusters", c], m) => clusters::one(who, t, c, m).await,
        (["tenants", t, "policies"], Method::Get) => list_policies(who, t).await,
        (["tenants", t, "policies"], Method::Post) => create_policy(who, t, body).await,
        (["tenants", t, "policies", p], m) => policy(who, t, p, m, body).await,
        (["whoami"] | ["events"] | ["tenants", ..] | ["webhooks", ..], _) => {
            Err(SwrError::method_not_allowed())
        }
        _ => Err(SwrError::not_found(format!("no admin API at {}", req.path))),
    }
}

fn admin_error(e: AdminError) -> SwrError {
    match e {
        AdminError::Invalid(m) => SwrError::bad_request(m),
        AdminError::Forbidden(m) => SwrError::forbidden(m),
        AdminError::NotFound(m) => SwrError::not_found(m),
        AdminError::Conflict(m) => SwrError::conflict(m),
    }
}

/// Applies the domain's writes atomically; a failed precondition is a
/// conflict about `what`.
async fn apply(writes: Vec<Write>, what: &str) -> Result<(), SwrError> {
    let ops = writes
        .into_iter()
        .map(|w| match w {
            Write::Create(k, v) => WriteOp::Put((k, v, Precondition::Absent)),
            Write::Replace(k, v, version) => WriteOp::Put((k, v, Precondition::Version(version))),
            Write::Put(k, v) => WriteOp::Put((k, v, Precondition::None)),
            Write::Delete(k) => WriteOp::Delete((k, Precondition::None)),
        })
        .collect();
    match store::commit(ops).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict) => Err(SwrError::conflict(format!(
            "{what} already exists or changed meanwhile"
        ))),
        Err(e) => Err(fault(e)),
    }
}

/// The record at `key` and the version it was read at, or 404 `missing`.
async fn versioned<T: serde::de::DeserializeOwned>(
    key: &str,
    missing: impl FnOnce() -> String,
) -> Result<(T, u64), SwrError> {
    let entry = store::get(key)
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(missing()))?;
    let value = serde_json::from_slice(&entry.value).map_err(fault)?;
    Ok((value, entry.version))
}

/// Every record under `prefix` with the version it was read at.
async fn versioned_all<T: serde::de::DeserializeOwned>(
    prefix: &str,
) -> Result<Vec<(T, u64)>, SwrError> {
    Ok(store::scan_all(prefix)
        .await
        .map_err(fault)?
        .into_iter()
        .filter_map(|e| Some((serde_json::from_slice(&e.value).ok()?, e.version)))
        .collect())
}

/// Every record under `prefix`.
async fn all<T: serde::de::DeserializeOwned>(prefix: &str) -> Result<Vec<T>, SwrError> {
    Ok(versioned_all(prefix)
        .await?
        .into_iter()
        .map(|(v, _)| v)
        .collect())
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

/// Cryptographically random characters of `alphabet` (`wasi:random`).
fn random(len: usize, alphabet: &[u8]) -> String {
    loop {
        let bytes = spin_sdk::wasip3::random::random::get_random_bytes(len as u64 * 2);
        if let Some(s) = admin::random_string(&bytes, len, alphabet) {
            return s;
        }
    }
}

/// 404 unless `who` may see `tenant` at all (no existence leak across
/// tenants), 403 unless it administers it.
async fn administered(who: &Principal, tenant: &str) -> Result<Tenant, SwrError> {
    if who.tenant != tenant && !admin::may_manage_tenants(who) {
        return Err(SwrError::not_found(format!("tenant {tenant} not found")));
    }
    let t = store::get_json::<Tenant>(&records::tenant(tenant))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("tenant {tenant} not found")))?;
    if !admin::may_administer(who, tenant) {
        return Err(SwrError::forbidden(format!(
            "only administrators of tenant {tenant} manage its identities"
        )));
    }
    Ok(t)
}

async fn check_references(
    tenant: &str,
    policies: &[String],
    groups: &[String],
) -> Result<(), SwrError> {
    for (key, missing) in admin::references(tenant, policies, groups) {
        if !store::exists(&key).await.map_err(oci_fault)? {
            return Err(SwrError::bad_request(missing));
        }
    }
    Ok(())
}

async fn whoami(who: &Principal) -> Result<Reply, SwrError> {
    let user = store::get_json::<User>(&records::user(&who.tenant, &who.user))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::unauthorized("the caller's user is gone"))?;
    let t = store::get_json::<Tenant>(&records::tenant(&who.tenant))
        .await
        .map_err(oci_fault)?;
    ok_json(
        200,
        &json!({
            "user": UserView::from(&user),
            "project_id": t.map(|t| t.project_id),
            "admin": who.admin,
            "system_admin": admin::may_manage_tenants(who),
        }),
    )
}

fn tenant_view(t: &Tenant) -> serde_json::Value {
    json!({"name": t.name, "project_id": t.project_id, "created": rfc3339(t.created)})
}

/// The event log after event `after` (default: from the start), at most
/// `limit` (1–1000, default 100) events; `next` is the `after` of the next
/// page, or null at the end of the log.
async fn list_events(req: &Incoming, who: &Principal) -> Result<Reply, SwrError> {
    use berth_domain::events::{self, Event};
    if !admin::may_manage_tenants(who) {
        return Err(SwrError::forbidden(
            "only the system tenant's administrators read the event log",
        ));
    }
    let after = match req.query("after") {
        None | Some("") => None,
        Some(a) => Some(events::key(a.parse().map_err(|_| {
            SwrError::bad_request("after must be an event id (a number)")
        })?)),
    };
    let limit = berth_guest::manage::limit_param(req, 100, 1000)?;
    let page = store::metadata::scan(events::PREFIX.to_string(), after, limit)
        .await
        .map_err(fault)?;
    let listed: Vec<_> = page
        .iter()
        .filter_map(|e| Event::parse(&e.key, &e.value))
        .collect();
    let next = (page.len() == limit as usize)
        .then(|| page.last().and_then(|e| events::id_of(&e.key)))
        .flatten()
        .map(|id| id.to_string());
    let out: Vec<_> = listed.iter().map(Event::view).collect();
    ok_json(200, &json!({ "events": out, "next": next }))
}

async fn list_tenants(who: &Principal) -> Result<Reply, SwrError> {
    if !admin::may_manage_tenants(who) {
        return Err(SwrError::forbidden(
            "only the system tenant's administrators list tenants",
        ));
    }
    let tenants: Vec<Tenant> = all("iam/tenant/").await?;
    let out: Vec<_> = tenants.iter().map(tenant_view).collect();
    ok_json(200, &json!({ "tenants": out }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    password: Option<String>,
}

async fn create_tenant(who: &Principal, body: &[u8]) -> Result<Reply, SwrError> {
    if !admin::may_manage_tenants(who) {
        return Err(SwrError::forbidden(
            "only the system tenant's administrators create tenants",
        ));
    }
    let b: CreateTenant = parse_body(body)?;
    let (password, generated) = password_or_generated(b.password)?;
    let (tenant, user, writes) = admin::new_tenant(
        &b.name,
        random(admin::ID_LEN, admin::ID_ALPHABET),
        random(admin::ID_LEN, admin::ID_ALPHABET),
        credentials::hash_password(password.clone()).await,
        store::now(),
    )
    .map_err(admin_error)?;
    apply(writes, &format!("tenant {}", b.name)).await?;
    let mut out = tenant_view(&tenant);
    out["account_user_id"] = json!(user.id);
    if generated {
        out["password"] = json!(password);
    }
    ok_json(201, &out)
}

fn password_or_generated(p: Option<String>) -> Result<(String, bool), SwrError> {
    match p {
        Some(p) => {
            admin::check_password(&p).map_err(admin_error)?;
            Ok((p, false))
        }
        None => Ok((random(admin::PASSWORD_LEN, admin::SECRET_ALPHABET), true)),
    }
}

async fn show_tenant(who: &Principal, tenant: &str) -> Result<Reply, SwrError> {
    let t = administered(who, tenant).await?;
    ok_json(200, &tenant_view(&t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointPolicyChange {
    enabled: Option<bool>,
    ip_list: Option<Vec<berth_domain::network::IpInfo>>,
}

async fn update_endpoint_policy(
    who: &Principal,
    tenant: &str,
    body: &[u8],
) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let b: EndpointPolicyChange = parse_body(body)?;
    let policy = berth_guest::manage::update_endpoint_policy(tenant, b.enabled, b.ip_list).await?;
    ok_json(200, &policy.view())
}

/// The tenant's audit log, newest first, for its administrators:
/// `{"events": [{id, time, user, operation, kind, resource_type, resource,
/// status, source}], "total", "next"}`. Filters as
/// `berth_domain::audit::Query::parse`; `limit` 1–1000 (default 100);
/// `next`, when more match, is the `before` of the following page (an
/// event id). Read only: no call edits or deletes a record.
async fn list_audit(req: &Incoming, who: &Principal, tenant: &str) -> Result<Reply, SwrError> {
    use berth_domain::audit;
    administered(who, tenant).await?;
    let query = audit::Query::parse(|k| req.query(k))?;
    let limit = berth_guest::manage::limit_param(req, 100, 1000)? as usize;
    let before = match req.query("before").filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(
            b.parse::<u128>()
                .map_err(|_| SwrError::bad_request("before must be an event id (a number)"))?,
        ),
    };
    let page = berth_guest::audit::newest(tenant, &query, before, 0, limit)
        .await
        .map_err(fault)?;
    let next = (page.total > limit as u64)
        .then(|| page.events.last().and_then(|(k, _)| audit::time_ns(k)))
        .flatten()
        .map(|ns| ns.to_string());
    let events: Vec<_> = page
        .events
        .iter()
        .map(|(k, e)| audit::admin_view(k, e))
        .collect();
    ok_json(
        200,
        &json!({ "events": events, "total": page.total, "next": next }),
    )
}

async fn list_users(who: &Principal, tenant: &str) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let users: Vec<User> = all(&records::user_prefix(tenant)).await?;
    let views: Vec<UserView> = users.iter().map(UserView::from).collect();
    ok_json(200, &json!({ "users": views }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    password: Option<String>,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

async fn create_user(who: &Principal, tenant: &str, body: &[u8]) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let b: CreateUser = parse_body(body)?;
    admin::check_user_name(tenant, &b.name).map_err(admin_error)?;
    check_references(tenant, &b.policies, &b.groups).await?;
    let (password, generated) = password_or_generated(b.password)?;
    let user = User {
        id: random(admin::ID_LEN, admin::ID_ALPHABET),
        tenant: tenant.into(),
        name: b.name.clone(),
        password: Some(credentials::hash_password(password.clone()).await),
        policies: b.policies,
        groups: b.groups,
        disabled: false,
        created: store::now(),
    };
    apply(admin::user_writes(&user), &format!("user {}", b.name)).await?;
    let mut out = json!(UserView::from(&user));
    if generated {
        out["password"] = json!(password);
    }
    ok_json(201, &out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    password: Option<String>,
    policies: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    disabled: Option<bool>,
}

async fn user(
    who: &Principal,
    tenant: &str,
    name: &str,
    method: &Method,
    body: &[u8],
) -> Result<Reply, SwrError> {
    // Users see and change their own password; the rest is for administrators.
    let own = admin::may_manage_credentials_of(who, tenant, name);
    if !own {
        administered(who, tenant).await?;
    }
    let key = records::user(tenant, name);
    let (mut u, version): (User, u64) =
        versioned(&key, || format!("user {name} not found in {tenant}")).await?;
    match method {
        Method::Get => ok_json(200, &UserView::from(&u)),
        Method::Patch => {
            let b: UpdateUser = parse_body(body)?;
            let privileged = b.policies.is_some() || b.groups.is_some() || b.disabled.is_some();
            if privileged && !admin::may_administer(who, tenant) {
                return Err(SwrError::forbidden(
                    "only administrators change policies, groups or status",
                ));
            }
            admin::check_account_user_change(&u, b.policies.as_deref(), b.disabled)
                .map_err(admin_error)?;
            check_references(
                tenant,
                b.policies.as_deref().unwrap_or_default(),
                b.groups.as_deref().unwrap_or_default(),
            )
            .await?;
            if let Some(p) = b.password {
                admin::check_password(&p).map_err(admin_error)?;
                u.password = Some(credentials::hash_password(p).await);
            }
            u.policies = b.policies.unwrap_or(u.policies);
            u.groups = b.groups.unwrap_or(u.groups);
            u.disabled = b.disabled.unwrap_or(u.disabled);
            apply(
                vec![Write::Replace(key, json_bytes(&u), version)],
                &format!("user {name}"),
            )
            .await?;
            ok_json(200, &UserView::from(&u))
        }
        Method::Delete => {
            if !admin::may_administer(who, tenant) {
                return Err(SwrError::forbidden("only administrators delete users"));
            }
            let keys = store::scan_names(&records::user_access_key_prefix(tenant, name))
                .await
                .map_err(fault)?;
            apply(
                admin::delete_user_writes(&u, &keys).map_err(admin_error)?,
                &format!("user {name}"),
            )
            .await?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}

/// 404 unless the user exists and `who` manages its credentials.
async fn key_owner(who: &Principal, tenant: &str, user: &str) -> Result<(), SwrError> {
    if !admin::may_manage_credentials_of(who, tenant, user) {
        administered(who, tenant).await?;
    }
    if !store::exists(&records::user(tenant, user))
        .await
        .map_err(oci_fault)?
    {
        return Err(SwrError::not_found(format!(
            "user {user} not found in {tenant}"
        )));
    }
    Ok(())
}

async fn user_keys(tenant: &str, user: &str) -> Result<Vec<AccessKey>, SwrError> {
    let aks = store::scan_names(&records::user_access_key_prefix(tenant, user))
        .await
        .map_err(fault)?;
    let keys = aks.iter().map(|ak| records::access_key(ak)).collect();
    Ok(store::metadata::get_many(keys)
        .await
        .map_err(fault)?
        .into_iter()
        .flatten()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect())
}

async fn list_keys(who: &Principal, tenant: &str, user: &str) -> Result<Reply, SwrError> {
    key_owner(who, tenant, user).await?;
    let keys = user_keys(tenant, user).await?;
    let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
    ok_json(200, &json!({ "credentials": views }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    description: String,
}

async fn create_key(
    who: &Principal,
    tenant: &str,
    user: &str,
    body: &[u8],
) -> Result<Reply, SwrError> {
    key_owner(who, tenant, user).await?;
    let b: CreateKey = if body.is_empty() {
        CreateKey::default()
    } else {
        parse_body(body)?
    };
    let existing = user_keys(tenant, user).await?.len();
    let ak = random(admin::AK_LEN, admin::AK_ALPHABET);
    let sk = random(admin::SK_LEN, admin::SECRET_ALPHABET);
    let sealed = berth_guest::auth::hex_encode(&credentials::seal(sk.as_bytes()));
    let (k, writes) = admin::new_access_key(
        tenant,
        user,
        ak,
        sealed,
        b.description,
        existing,
        store::now(),
    )
    .map_err(admin_error)?;
    apply(writes, "access key").await?;
    let mut out = json!(KeyView::from(&k));
    out["secret"] = json!(sk);
    ok_json(201, &out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKey {
    status: Option<String>,
    description: Option<String>,
}

async fn key(
    who: &Principal,
    tenant: &str,
    user: &str,
    ak: &str,
    method: &Method,
    body: &[u8],
) -> Result<Reply, SwrError> {
    key_owner(who, tenant, user).await?;
    let record = records::access_key(ak);
    let missing = || format!("access key {ak} not found");
    let (mut k, version): (AccessKey, u64) = versioned(&record, missing).await?;
    // Another user's key is not found under this user.
    if k.tenant != tenant || k.user != user {
        return Err(SwrError::not_found(missing()));
    }
    match method {
        Method::Get => ok_json(200, &KeyView::from(&k)),
        Method::Patch => {
            let b: UpdateKey = parse_body(body)?;
            match b.status.as_deref() {
                None => {}
                Some("active") => k.active = true,
                Some("inactive") => k.active = false,
                Some(s) => {
                    return Err(SwrError::bad_request(format!(
                        "status must be \"active\" or \"inactive\", not {s:?}"
                    )));
                }
            }
            if let Some(d) = b.description {
                k.description = d;
            }
            apply(
                vec![Write::Replace(record, json_bytes(&k), version)],
                "access key",
            )
            .await?;
            ok_json(200, &KeyView::from(&k))
        }
        Method::Delete => {
            apply(admin::delete_access_key_writes(&k), "access key").await?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}

async fn list_groups(who: &Principal, tenant: &str) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let groups: Vec<Group> = all(&records::group_prefix(tenant)).await?;
    let groups: Vec<_> = groups.iter().map(group_view).collect();
    ok_json(200, &json!({ "groups": groups }))
}

fn group_view(g: &Group) -> serde_json::Value {
    json!({"name": g.name, "policies": g.policies, "created": rfc3339(g.created)})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    name: Option<String>,
    policies: Option<Vec<String>>,
}

async fn create_group(who: &Principal, tenant: &str, body: &[u8]) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let b: GroupBody = parse_body(body)?;
    let name = b
        .name
        .ok_or_else(|| SwrError::bad_request("a group needs a name"))?;
    let policies = b.policies.unwrap_or_default();
    check_references(tenant, &policies, &[]).await?;
    let g = admin::new_group(&name, policies, store::now()).map_err(admin_error)?;
    apply(
        vec![Write::Create(records::group(tenant, &name), json_bytes(&g))],
        &format!("group {name}"),
    )
    .await?;
    ok_json(201, &group_view(&g))
}

async fn group(
    who: &Principal,
    tenant: &str,
    name: &str,
    method: &Method,
    body: &[u8],
) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let key = records::group(tenant, name);
    let (mut g, version): (Group, u64) =
        versioned(&key, || format!("group {name} not found in {tenant}")).await?;
    match method {
        Method::Get => {
            // Members: users naming the group.
            let users: Vec<User> = all(&records::user_prefix(tenant)).await?;
            let members: Vec<String> = users
                .into_iter()
                .filter(|u| u.groups.iter().any(|x| x == name))
                .map(|u| u.name)
                .collect();
            let mut out = group_view(&g);
            out["members"] = json!(members);
            ok_json(200, &out)
        }
        Method::Patch => {
            let b: GroupBody = parse_body(body)?;
            if b.name.as_ref().is_some_and(|n| n != name) {
                return Err(SwrError::bad_request("a group cannot be renamed"));
            }
            if let Some(p) = b.policies {
                check_references(tenant, &p, &[]).await?;
                g.policies = p;
            }
            apply(
                vec![Write::Replace(key, json_bytes(&g), version)],
                &format!("group {name}"),
            )
            .await?;
            ok_json(200, &group_view(&g))
        }
        Method::Delete => {
            let users = versioned_all(&records::user_prefix(tenant)).await?;
            apply(admin::delete_group_writes(tenant, name, &users), "group").await?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}

fn policy_view(p: &CustomPolicy) -> serde_json::Value {
    json!({"name": p.name, "description": p.description, "document": p.document,
           "created": rfc3339(p.created)})
}

async fn list_policies(who: &Principal, tenant: &str) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let custom: Vec<CustomPolicy> = all(&records::policy_prefix(tenant)).await?;
    let custom: Vec<_> = custom.iter().map(policy_view).collect();
    let system = [
        berth_domain::iam::FULL_ACCESS,
        berth_domain::iam::OPERATE_ACCESS,
        berth_domain::iam::READ_ONLY_ACCESS,
    ]
    .map(|n| json!({"name": n, "document": berth_domain::iam::system_policy(n)}));
    let roles = [
        berth_domain::iam::ADMIN_ROLE,
        berth_domain::iam::TENANT_ADMIN_ROLE,
    ];
    ok_json(
        200,
        &json!({ "system": system, "roles": roles, "custom": custom }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    name: Option<String>,
    #[serde(default)]
    description: String,
    document: serde_json::Value,
}

async fn create_policy(who: &Principal, tenant: &str, body: &[u8]) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let b: PolicyBody = parse_body(body)?;
    let name = b
        .name
        .ok_or_else(|| SwrError::bad_request("a policy needs a name"))?;
    let p = admin::new_policy(&name, b.description, &b.document.to_string(), store::now())
        .map_err(admin_error)?;
    apply(
        vec![Write::Create(
            records::policy(tenant, &name),
            json_bytes(&p),
        )],
        &format!("policy {name}"),
    )
    .await?;
    ok_json(201, &policy_view(&p))
}

async fn policy(
    who: &Principal,
    tenant: &str,
    name: &str,
    method: &Method,
    body: &[u8],
) -> Result<Reply, SwrError> {
    administered(who, tenant).await?;
    let key = records::policy(tenant, name);
    let (old, version): (CustomPolicy, u64) =
        versioned(&key, || format!("policy {name} not found in {tenant}")).await?;
    match method {
        Method::Get => ok_json(200, &policy_view(&old)),
        Method::Put => {
            let b: PolicyBody = parse_body(body)?;
            if b.name.as_ref().is_some_and(|n| n != name) {
                return Err(SwrError::bad_request("a policy cannot be renamed"));
            }
            let p = admin::new_policy(name, b.description, &b.document.to_string(), old.created)
                .map_err(admin_error)?;
            apply(
                vec![Write::Replace(key, json_bytes(&p), version)],
                &format!("policy {name}"),
            )
            .await?;
            ok_json(200, &policy_view(&p))
        }
        Method::Delete => {
            let users = versioned_all(&records::user_prefix(tenant)).await?;
            let groups = versioned_all(&records::group_prefix(tenant)).await?;
            apply(
                admin::delete_policy_writes(tenant, name, &users, &groups),
                "policy",
            )
            .await?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}
