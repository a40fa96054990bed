//! Turning credentials into a [`Principal`] and reading the [`Facts`] a
//! decision needs from the metadata store. The decision itself is
//! `berth_domain::iam::decide`; this module only fetches what it weighs.

use crate::store::{self, credentials, metadata};
use berth_domain::OciError;
use berth_domain::iam::docker::{self, Login, RegistryClaims};
use berth_domain::iam::records::{self, AccessKey, Grant, Namespace, RepositoryMeta, Share, User};
use berth_domain::iam::{self, Action, Basis, Facts, Principal};
use berth_domain::network::{self, EndpointPolicy};

/// The principal of `tenant`/`user` with every policy its user and groups
/// carry, or `None` if the user does not exist or is disabled.
pub async fn principal(tenant: &str, user: &str) -> Result<Option<Principal>, OciError> {
    let Some(u) = store::get_json::<User>(&records::user(tenant, user)).await? else {
        return Ok(None);
    };
    principal_of(u).await
}

pub async fn principal_of(u: User) -> Result<Option<Principal>, OciError> {
    if u.disabled {
        return Ok(None);
    }
    let mut names = u.policies.clone();
    let group_keys: Vec<String> = u
        .groups
        .iter()
        .map(|g| records::group(&u.tenant, g))
        .collect();
    for g in metadata::get_many(group_keys)
        .await
        .map_err(store::fault)?
        .into_iter()
        .flatten()
    {
        if let Ok(g) = serde_json::from_slice::<records::Group>(&g.value) {
            names.extend(g.policies);
        }
    }
    names.sort();
    names.dedup();
    // The account's own user (named like the tenant) administers it.
    let admin = u.name == u.tenant || names.iter().any(|n| iam::is_admin_role(n));
    let mut policies = Vec::new();
    let mut custom = Vec::new();
    for n in &names {
        match iam::system_policy(n) {
            Some(doc) => policies.push(doc),
            None if !iam::is_admin_role(n) => custom.push(records::policy(&u.tenant, n)),
            None => {}
        }
    }
    for e in metadata::get_many(custom)
        .await
        .map_err(store::fault)?
        .into_iter()
        .flatten()
    {
        if let Ok(p) = serde_json::from_slice::<records::CustomPolicy>(&e.value) {
            policies.push(p.document);
        }
    }
    Ok(Some(Principal {
        tenant: u.tenant,
        user: u.name,
        user_id: u.id,
        admin,
        policies,
        access_key: None,
    }))
}

/// How long an instance trusts that a user is still enabled.
const ACTIVE_FOR_NANOS: u64 = 5_000_000_000;

/// tenant → user → (when checked, monotonic ns; the enabled user's id, or
/// none when disabled or gone). Nested so a lookup borrows the names
/// instead of allocating a key per request.
type ActiveCache =
    std::collections::HashMap<String, std::collections::HashMap<String, (u64, Option<String>)>>;

thread_local! {
    static ACTIVE: std::cell::RefCell<ActiveCache> = Default::default();
}

/// Whether user `tenant`/`user` still exists, is enabled, and is the user
/// of id `uid` a token was issued to (empty: tokens of earlier versions,
/// which name no id). A Bearer token was decided when issued; this stops a
/// disabled, deleted or re-created user's tokens within seconds instead of
/// at expiry, at the cost of one read per user every few seconds per
/// instance.
pub async fn still_active(tenant: &str, user: &str, uid: &str) -> Result<bool, OciError> {
    let same = |id: &Option<String>| id.as_deref().is_some_and(|id| uid.is_empty() || id == uid);
    let now = monotonic_now();
    let fresh = ACTIVE.with(|a| {
        let a = a.borrow();
        let (at, id) = a.get(tenant)?.get(user)?;
        (now.saturating_sub(*at) < ACTIVE_FOR_NANOS).then(|| same(id))
    });
    if let Some(active) = fresh {
        return Ok(active);
    }
    let id = store::get_json::<User>(&records::user(tenant, user))
        .await?
        .filter(|u| !u.disabled)
        .map(|u| u.id);
    let active = same(&id);
    ACTIVE.with(|a| {
        let mut a = a.borrow_mut();
        // Bounded: an instance sees few users between recycles.
        if a.values().map(|users| users.len()).sum::<usize>() > 4096 {
            a.clear();
        }
        a.entry(tenant.to_string())
            .or_default()
            .insert(user.to_string(), (now, id));
    });
    Ok(active)
}

/// Whether access key `ak` exists and is active (without unsealing its
/// secret).
pub async fn key_active(ak: &str) -> Result<bool, OciError> {
    Ok(store::get_json::<AccessKey>(&records::access_key(ak))
        .await?
        .is_some_and(|k| k.active))
}

/// Facts an instance trusts for a few seconds ([`ACTIVE_FOR_NANOS`]),
/// keyed by a name looked up without allocating. Bounded: an instance sees
/// few names between recycles.
struct Recent<V>(std::collections::HashMap<String, (u64, V)>);

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent(Default::default())
    }
}

impl<V> Recent<V> {
    fn fresh(&self, key: &str, now: u64) -> Option<&V> {
        let (at, v) = self.0.get(key)?;
        (now.saturating_sub(*at) < ACTIVE_FOR_NANOS).then_some(v)
    }

    fn remember(&mut self, key: &str, now: u64, v: V) {
        if self.0.len() > 4096 {
            self.0.clear();
        }
        self.0.insert(key.to_string(), (now, v));
    }
}

fn monotonic_now() -> u64 {
    spin_sdk::wasip3::clocks::monotonic_clock::now()
}

thread_local! {
    /// access key → active.
    static KEYS: std::cell::RefCell<Recent<bool>> = Default::default();
    /// organization → owning tenant.
    static OWNERS: std::cell::RefCell<Recent<String>> = Default::default();
    /// tenant → its endpoint policy, when it restricts anything.
    static POLICIES: std::cell::RefCell<Recent<Option<EndpointPolicy>>> = Default::default();
}

/// Where a request comes from, read only when a policy needs it: the
/// peer (`spin-client-addr`) and every `X-Forwarded-For` line joined.
pub trait Origin {
    fn peer(&self) -> String;
    fn forwarded(&self) -> String;
}

impl Origin for crate::http::Incoming {
    fn peer(&self) -> String {
        self.header(store::CLIENT_ADDR).unwrap_or_default()
    }
    fn forwarded(&self) -> String {
        self.headers_all("x-forwarded-for").join(",")
    }
}

impl Origin for spin_sdk::wasip3::http::types::Fields {
    fn peer(&self) -> String {
        self.get(store::CLIENT_ADDR)
            .into_iter()
            .next()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default()
    }
    fn forwarded(&self) -> String {
        self.get("x-forwarded-for")
            .into_iter()
            .filter_map(|v| String::from_utf8(v).ok())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Whether a password sign-in as `username` may be checked from `origin`:
/// false when the tenant the name names (`user@tenant`, or the account's
/// name) does not let the address in. The caller then answers exactly as
/// for a wrong password, so an address outside the allow list learns
/// neither whether a password is right nor which tenants have a list; the
/// refusal goes to the log. Logins with an access key are checked once
/// the key names its tenant.
pub async fn login_allowed(username: &str, origin: &impl Origin) -> Result<bool, OciError> {
    match docker::parse_login(username) {
        Login::User { tenant, .. } | Login::Account { tenant } => {
            match network_allows(tenant, origin).await? {
                Ok(()) => Ok(true),
                Err(message) => {
                    eprintln!("a sign-in was refused: {message}");
                    Ok(false)
                }
            }
        }
        Login::AccessKey { .. } => Ok(true),
    }
}

/// Whether `tenant`'s endpoint policy (`berth_domain::network`) lets in a
/// request from `origin` (its `X-Forwarded-For` counts only from a
/// trusted proxy). `Err` with the refusal's message when it does not. The
/// policy is trusted for a few seconds per instance; the request's
/// addresses and the settings are read only for a policy that restricts
/// something (nothing is allocated for an open one).
pub async fn network_allows(
    tenant: &str,
    origin: &impl Origin,
) -> Result<Result<(), String>, OciError> {
    let now = monotonic_now();
    let cached = POLICIES.with(|p| p.borrow().fresh(tenant, now).cloned());
    let policy = match cached {
        Some(p) => p,
        None => {
            let p = store::get_json::<EndpointPolicy>(&network::policy_key(tenant))
                .await?
                .filter(|p| !p.open());
            POLICIES.with(|c| c.borrow_mut().remember(tenant, now, p.clone()));
            p
        }
    };
    let Some(policy) = policy else {
        return Ok(Ok(()));
    };
    let setting = |name: &str| {
        let value = store::config::get(name).unwrap_or_default();
        network::parse_nets(&value).unwrap_or_else(|e| {
            eprintln!("the {name} setting is ignored: {e}");
            Vec::new()
        })
    };
    let forwarded = origin.forwarded();
    let client = network::client_ip(
        &origin.peer(),
        Some(&forwarded),
        &setting(network::TRUSTED_PROXIES),
    );
    if policy.allows(client, &setting(network::INTERNAL_NETWORKS)) {
        Ok(Ok(()))
    } else {
        let from = client.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
        Ok(Err(format!(
            "access from {from} is not allowed by tenant {tenant}'s endpoint policy"
        )))
    }
}

/// [`key_active`], trusted for a few seconds per instance: Bearer tokens
/// issued on an access key's credential (its long-term login or a
/// temporary login it asked for) stop within seconds of the key being
/// disabled or deleted, as a user's do ([`still_active`]).
pub async fn key_still_active(ak: &str) -> Result<bool, OciError> {
    let now = monotonic_now();
    if let Some(active) = KEYS.with(|k| k.borrow().fresh(ak, now).copied()) {
        return Ok(active);
    }
    let active = key_active(ak).await?;
    KEYS.with(|k| k.borrow_mut().remember(ak, now, active));
    Ok(active)
}

/// Whether a Bearer token's holder may still use it: its access key (if it
/// came from one) and its user are still there and enabled, the user being
/// the one it was issued to. Each fact is trusted for a few seconds per
/// instance.
pub async fn token_holder_active(c: &RegistryClaims) -> Result<bool, OciError> {
    if let Some(k) = &c.key
        && !key_still_active(k).await?
    {
        return Ok(false);
    }
    still_active(&c.tenant, &c.sub, &c.uid).await
}

/// An access key and its secret, if the key exists and is active.
pub async fn access_key(ak: &str) -> Result<Option<(AccessKey, String)>, OciError> {
    let Some(key) = store::get_json::<AccessKey>(&records::access_key(ak)).await? else {
        return Ok(None);
    };
    if !key.active {
        return Ok(None);
    }
    let sk = unseal_hex(&key.sealed_sk)
        .ok_or_else(|| OciError::internal("an access key could not be unsealed"))?;
    Ok(Some((key, sk)))
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `secret` sealed by the host's key, as hex (how records keep secrets).
pub fn seal_hex(secret: &str) -> String {
    hex_encode(&credentials::seal(secret.as_bytes()))
}

/// The text [`seal_hex`] sealed; `None` if this host's key did not seal it.
pub fn unseal_hex(sealed: &str) -> Option<String> {
    String::from_utf8(credentials::unseal(&hex_decode(sealed)?)?).ok()
}

/// Who a docker login (`Basic`) names, if the password is right: a user's
/// password, SWR's long-term key (HMAC of the AK by the SK) or a temporary
/// login key issued by `POST /v2/manage/utils/secret`.
pub async fn login(username: &str, password: &str) -> Result<Option<Principal>, OciError> {
    match docker::parse_login(username) {
        Login::AccessKey { ak, .. } => {
            if password.matches('.').count() == 2 {
                let claims = credentials::verify_token(password)
                    .and_then(|c| serde_json::from_str::<RegistryClaims>(&c).ok());
                // A temporary login lives as long as its access key does.
                return match claims {
                    Some(c) if c.kind == "login" && c.ak.as_deref() == Some(ak) => {
                        let key_alive = match &c.key {
                            Some(k) => key_active(k).await?,
                            None => true,
                        };
                        if !key_alive {
                            return Ok(None);
                        }
                        // Only the user it was issued to, not a namesake
                        // created since; what it is used for (tokens) lives
                        // as long as the key too.
                        Ok(principal(&c.tenant, &c.sub)
                            .await?
                            .filter(|p| c.uid.is_empty() || p.user_id == c.uid)
                            .map(|p| Principal {
                                access_key: c.key.clone(),
                                ..p
                            }))
                    }
                    _ => Ok(None),
                };
            }
            match access_key(ak).await? {
                Some((key, sk)) => {
                    let expected = docker::long_term_password(ak, &sk);
                    if berth_domain::iam::signing::constant_time_eq(
                        expected.as_bytes(),
                        password.to_lowercase().as_bytes(),
                    ) {
                        Ok(principal(&key.tenant, &key.user).await?.map(|p| Principal {
                            access_key: Some(key.ak),
                            ..p
                        }))
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            }
        }
        Login::User { tenant, user } => password_login(tenant, user, password).await,
        Login::Account { tenant } => password_login(tenant, tenant, password).await,
    }
}

async fn password_login(
    tenant: &str,
    user: &str,
    password: &str,
) -> Result<Option<Principal>, OciError> {
    let Some(u) = store::get_json::<User>(&records::user(tenant, user)).await? else {
        return Ok(None);
    };
    match &u.password {
        Some(hash) if credentials::verify_password(password.to_string(), hash.clone()).await => {
            principal_of(u).await
        }
        _ => Ok(None),
    }
}

/// The organization a repository belongs to: its first path segment.
pub fn namespace_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// What the store says about `repo` for `who`, in one metadata round trip.
pub async fn repository_facts(who: Option<&Principal>, repo: &str) -> Result<Facts, OciError> {
    let ns = namespace_of(repo);
    let uid = who.map(|p| p.user_id.as_str()).unwrap_or("");
    let tenant = who.map(|p| p.tenant.as_str()).unwrap_or("");
    let keys = vec![
        records::namespace(ns),
        records::repository_meta(repo),
        records::namespace_grant(ns, uid),
        records::repository_grant(repo, uid),
        records::share(repo, tenant),
    ];
    let got = metadata::get_many(keys).await.map_err(store::fault)?;
    let json = |i: usize| got[i].as_ref().map(|e| e.value.as_slice());
    let owner = json(0)
        .and_then(|v| serde_json::from_slice::<Namespace>(v).ok())
        .map(|n| n.tenant);
    let public = json(1)
        .and_then(|v| serde_json::from_slice::<RepositoryMeta>(v).ok())
        .is_some_and(|m| m.public);
    let grant = |i: usize| {
        who?;
        json(i)
            .and_then(|v| serde_json::from_slice::<Grant>(v).ok())
            .map(|g| g.level)
    };
    let shared = who.is_some()
        && json(4)
            .and_then(|v| serde_json::from_slice::<Share>(v).ok())
            .is_some_and(|s| s.in_force(store::now()));
    Ok(Facts {
        owner,
        public,
        namespace_grant: grant(2),
        repository_grant: grant(3),
        shared,
    })
}

/// What the store says about an organization for `who`.
pub async fn namespace_facts(who: Option<&Principal>, ns: &str) -> Result<Facts, OciError> {
    let uid = who.map(|p| p.user_id.as_str()).unwrap_or("");
    let keys = vec![records::namespace(ns), records::namespace_grant(ns, uid)];
    let got = metadata::get_many(keys).await.map_err(store::fault)?;
    let owner = got[0]
        .as_ref()
        .and_then(|e| serde_json::from_slice::<Namespace>(&e.value).ok())
        .map(|n| n.tenant);
    let namespace_grant = got[1]
        .as_ref()
        .filter(|_| who.is_some())
        .and_then(|e| serde_json::from_slice::<Grant>(&e.value).ok())
        .map(|g| g.level);
    Ok(Facts {
        owner,
        namespace_grant,
        ..Facts::default()
    })
}

/// Whether `who` may do `action` on repository `repo`.
pub async fn may(who: Option<&Principal>, action: Action, repo: &str) -> Result<bool, OciError> {
    let facts = repository_facts(who, repo).await?;
    Ok(iam::decide(
        who,
        action,
        &iam::action::repository_resource(repo),
        &facts,
    ))
}

/// The docker actions (`pull`, `push`, `delete`) `who` holds on `repo`,
/// out of those `asked`, each with what it rests on.
pub async fn docker_actions(
    who: Option<&Principal>,
    repo: &str,
    asked: &[&'static str],
) -> Result<Vec<(&'static str, Basis)>, OciError> {
    let facts = repository_facts(who, repo).await?;
    let resource = iam::action::repository_resource(repo);
    // Pushing into an organization that does not exist creates it: only for
    // callers who may create organizations.
    let may_create = facts.owner.is_some()
        || iam::decide(
            who,
            Action::CreateNamespace,
            &iam::action::namespace_resource(namespace_of(repo)),
            &facts,
        );
    Ok(asked
        .iter()
        .filter_map(|&a| {
            let act = docker::action(a)?;
            let basis = iam::decide_basis(who, act, &resource, &facts)?;
            (act != Action::Push || may_create).then_some((a, basis))
        })
        .collect())
}

/// Whether this instance read, in the last few seconds, that organization
/// `ns` belongs to `tenant`. Only that positive fact is kept, and briefly:
/// a deleted organization's name stays with its tenant for longer
/// (`records::RELEASE_HOLD_SECS`), so no other tenant can own it meanwhile.
/// "No owner yet" is never kept — it is what another tenant's first push
/// changes.
fn owned_recently(ns: &str, tenant: &str) -> bool {
    let now = monotonic_now();
    OWNERS.with(|o| o.borrow().fresh(ns, now).is_some_and(|t| t == tenant))
}

fn remember_owner(ns: &str, tenant: &str) {
    let now = monotonic_now();
    OWNERS.with(|o| o.borrow_mut().remember(ns, now, tenant.to_string()));
}

/// Whether what a token's grant on `repo` rests on still holds for a
/// caller of `tenant` (empty: anonymous): one metadata read, of the one
/// record the basis depends on.
pub async fn basis_holds(tenant: &str, repo: &str, basis: Basis) -> Result<bool, OciError> {
    let mut facts = Facts::default();
    match basis {
        Basis::Own => {
            let ns = namespace_of(repo);
            if owned_recently(ns, tenant) {
                return Ok(true);
            }
            facts.owner = store::get_json::<Namespace>(&records::namespace(ns))
                .await?
                .map(|n| n.tenant);
            if facts.owner.as_deref() == Some(tenant) {
                remember_owner(ns, tenant);
            }
        }
        Basis::Public => {
            facts.public = store::get_json::<RepositoryMeta>(&records::repository_meta(repo))
                .await?
                .is_some_and(|m| m.public);
        }
        Basis::Shared => {
            facts.shared = !tenant.is_empty()
                && store::get_json::<Share>(&records::share(repo, tenant))
                    .await?
                    .is_some_and(|s| s.in_force(store::now()));
        }
    }
    Ok(basis.holds(tenant, &facts))
}
