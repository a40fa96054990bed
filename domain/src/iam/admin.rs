//! Administering identities: who may manage tenants, users, groups,
//! policies and access keys, and what each change writes. Both the
//! `berth iam` CLI (host) and the admin API (`components/admin`) apply
//! these rules; each only does the reading and writing.

use super::records::{self, AccessKey, CustomPolicy, Group, Tenant, User};
use super::{PolicyDocument, Principal, TENANT_ADMIN_ROLE, is_system_name};
use serde::Serialize;

/// The tenant created on first start; its administrators administer every
/// tenant (create tenants, manage anyone's users).
pub const SYSTEM_TENANT: &str = "admin";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// Whether `who` may create and list tenants.
pub fn may_manage_tenants(who: &Principal) -> bool {
    who.admin && who.tenant == SYSTEM_TENANT
}

/// Whether `who` may manage identities in `tenant`: its administrators, and
/// the system tenant's.
pub fn may_administer(who: &Principal, tenant: &str) -> bool {
    who.admin && (who.tenant == tenant || may_manage_tenants(who))
}

/// Whether `who` may manage `user`'s own credentials (password, access
/// keys): the user, or an administrator of the tenant — as IAM lets users
/// manage their own keys.
pub fn may_manage_credentials_of(who: &Principal, tenant: &str, user: &str) -> bool {
    (who.tenant == tenant && who.user == user) || may_administer(who, tenant)
}

/// Alphabets and lengths of generated identifiers and secrets.
pub const AK_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const AK_LEN: usize = 20;
pub const SECRET_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const SK_LEN: usize = 40;
pub const PASSWORD_LEN: usize = 24;
pub const ID_ALPHABET: &[u8] = b"0123456789abcdef";
pub const ID_LEN: usize = 32;

/// A string of `alphabet` drawn from `random` bytes, one byte per
/// character (rejection sampling keeps the draw uniform, so give twice as
/// many bytes as characters wanted). `None` if the bytes ran out.
pub fn random_string(random: &[u8], len: usize, alphabet: &[u8]) -> Option<String> {
    let limit = 256 - 256 % alphabet.len();
    let out: String = random
        .iter()
        .filter(|b| (**b as usize) < limit)
        .take(len)
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect();
    (out.len() == len).then_some(out)
}

/// One change to the metadata store; each side maps it to its own store
/// operations. A `Create` fails the whole change if the key exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create(String, Vec<u8>),
    /// Overwrite a record read at `version` (fails if it changed since).
    Replace(String, Vec<u8>, u64),
    Put(String, Vec<u8>),
    Delete(String),
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

pub fn check_password(p: &str) -> Result<(), AdminError> {
    if p.is_empty() || p.len() > 256 {
        return Err(AdminError::Invalid(
            "a password must have 1 to 256 characters".into(),
        ));
    }
    Ok(())
}

/// A new tenant and its account user (named like the tenant, administers
/// it), and what creating them writes.
pub fn new_tenant(
    name: &str,
    project_id: String,
    user_id: String,
    password_hash: String,
    now: u64,
) -> Result<(Tenant, User, Vec<Write>), AdminError> {
    if !records::valid_identity_name(name) {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a valid tenant name (letters, digits, - _ ., up to 64, starting with a letter or digit)"
        )));
    }
    let tenant = Tenant {
        name: name.into(),
        project_id,
        created: now,
    };
    let user = User {
        id: user_id,
        tenant: name.into(),
        name: name.into(),
        password: Some(password_hash),
        policies: vec![TENANT_ADMIN_ROLE.into()],
        groups: vec![],
        disabled: false,
        created: now,
    };
    let mut writes = vec![
        Write::Create(records::tenant(name), json(&tenant)),
        Write::Create(
            records::project(&tenant.project_id),
            json(&name.to_string()),
        ),
    ];
    writes.extend(user_writes(&user));
    Ok((tenant, user, writes))
}

/// A user name must be valid and must not be the tenant's own (that one
/// is the account user).
pub fn check_user_name(tenant: &str, name: &str) -> Result<(), AdminError> {
    if !records::valid_identity_name(name) || name == tenant {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a valid user name (letters, digits, - _ ., up to 64; not the tenant's name)"
        )));
    }
    Ok(())
}

/// The keys that must exist for `policies` and `groups` to be attachable
/// in `tenant`, each with what to say when it does not.
pub fn references(tenant: &str, policies: &[String], groups: &[String]) -> Vec<(String, String)> {
    let policies = policies.iter().filter(|p| !is_system_name(p)).map(|p| {
        (
            records::policy(tenant, p),
            format!("no system or custom policy named {p:?} in tenant {tenant}"),
        )
    });
    let groups = groups.iter().map(|g| {
        (
            records::group(tenant, g),
            format!("no group {g:?} in tenant {tenant}"),
        )
    });
    policies.chain(groups).collect()
}

/// What creating `user` writes: the record and its id index.
pub fn user_writes(user: &User) -> Vec<Write> {
    vec![
        Write::Create(records::user(&user.tenant, &user.name), json(user)),
        Write::Create(
            records::user_id(&user.id),
            json(&format!("{}/{}", user.tenant, user.name)),
        ),
    ]
}

/// What deleting `user` writes, given its access key ids. The account user
/// cannot be deleted (it is the tenant).
pub fn delete_user_writes(user: &User, access_keys: &[String]) -> Result<Vec<Write>, AdminError> {
    if user.name == user.tenant {
        return Err(AdminError::Invalid(
            "the account user cannot be deleted; it is the tenant".into(),
        ));
    }
    let mut writes = vec![
        Write::Delete(records::user(&user.tenant, &user.name)),
        Write::Delete(records::user_id(&user.id)),
    ];
    for ak in access_keys {
        writes.push(Write::Delete(records::access_key(ak)));
        writes.push(Write::Delete(records::user_access_key(
            &user.tenant,
            &user.name,
            ak,
        )));
    }
    Ok(writes)
}

/// Whether an administrator may change `user`'s policies or disable it:
/// the account user always keeps its role and stays enabled, so a tenant
/// cannot lock itself out.
pub fn check_account_user_change(
    user: &User,
    policies: Option<&[String]>,
    disabled: Option<bool>,
) -> Result<(), AdminError> {
    if user.name != user.tenant {
        return Ok(());
    }
    if disabled == Some(true) {
        return Err(AdminError::Invalid(
            "the account user cannot be disabled".into(),
        ));
    }
    if policies.is_some_and(|p| !p.iter().any(|n| n == TENANT_ADMIN_ROLE)) {
        return Err(AdminError::Invalid(format!(
            "the account user keeps the {TENANT_ADMIN_ROLE:?} role"
        )));
    }
    Ok(())
}

pub fn new_group(name: &str, policies: Vec<String>, now: u64) -> Result<Group, AdminError> {
    if !records::valid_identity_name(name) {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a valid group name"
        )));
    }
    Ok(Group {
        name: name.into(),
        policies,
        created: now,
    })
}

/// A custom policy; its name must not be a system policy's or role's.
pub fn new_policy(
    name: &str,
    description: String,
    document: &str,
    now: u64,
) -> Result<CustomPolicy, AdminError> {
    if is_system_name(name) || name.is_empty() || name.len() > 128 || name.contains('/') {
        return Err(AdminError::Invalid(format!(
            "{name:?} is not a valid custom policy name (1-128 characters, no '/', not a system policy's)"
        )));
    }
    let document = PolicyDocument::parse(document)
        .map_err(|e| AdminError::Invalid(format!("invalid policy document: {e}")))?;
    Ok(CustomPolicy {
        name: name.into(),
        description,
        document,
        created: now,
    })
}

/// A new access key of `tenant`/`user` (the SK already sealed), and what
/// creating it writes. A user has at most [`MAX_KEYS`] keys, as IAM.
pub fn new_access_key(
    tenant: &str,
    user: &str,
    ak: String,
    sealed_sk: String,
    description: String,
    existing: usize,
    now: u64,
) -> Result<(AccessKey, Vec<Write>), AdminError> {
    if existing >= MAX_KEYS {
        return Err(AdminError::Conflict(format!(
            "{user} already has {MAX_KEYS} access keys; delete one first"
        )));
    }
    let key = AccessKey {
        ak: ak.clone(),
        tenant: tenant.into(),
        user: user.into(),
        sealed_sk,
        active: true,
        description,
        created: now,
    };
    let writes = vec![
        Write::Create(records::access_key(&ak), json(&key)),
        Write::Put(records::user_access_key(tenant, user, &ak), Vec::new()),
    ];
    Ok((key, writes))
}

pub const MAX_KEYS: usize = 2;

pub fn delete_access_key_writes(k: &AccessKey) -> Vec<Write> {
    vec![
        Write::Delete(records::access_key(&k.ak)),
        Write::Delete(records::user_access_key(&k.tenant, &k.user, &k.ak)),
    ]
}

/// What deleting group `name` writes: the group, and its name out of every
/// member's list (`users` as read, with their versions) — so a group made
/// later under the same name does not inherit the old members.
pub fn delete_group_writes(tenant: &str, name: &str, users: &[(User, u64)]) -> Vec<Write> {
    let mut writes = vec![Write::Delete(records::group(tenant, name))];
    for (u, version) in users {
        if u.groups.iter().any(|g| g == name) {
            let mut u = u.clone();
            u.groups.retain(|g| g != name);
            writes.push(Write::Replace(
                records::user(tenant, &u.name),
                json(&u),
                *version,
            ));
        }
    }
    writes
}

/// What deleting custom policy `name` writes: the policy, and its name out
/// of every user's and group's list — so a policy made later under the
/// same name is not attached to anyone by accident.
pub fn delete_policy_writes(
    tenant: &str,
    name: &str,
    users: &[(User, u64)],
    groups: &[(Group, u64)],
) -> Vec<Write> {
    let mut writes = vec![Write::Delete(records::policy(tenant, name))];
    for (u, version) in users {
        if u.policies.iter().any(|p| p == name) {
            let mut u = u.clone();
            u.policies.retain(|p| p != name);
            writes.push(Write::Replace(
                records::user(tenant, &u.name),
                json(&u),
                *version,
            ));
        }
    }
    for (g, version) in groups {
        if g.policies.iter().any(|p| p == name) {
            let mut g = g.clone();
            g.policies.retain(|p| p != name);
            writes.push(Write::Replace(
                records::group(tenant, &g.name),
                json(&g),
                *version,
            ));
        }
    }
    writes
}

/// A user as the admin API shows it (never the password hash).
#[derive(Serialize)]
pub struct UserView<'a> {
    pub id: &'a str,
    pub tenant: &'a str,
    pub name: &'a str,
    pub policies: &'a [String],
    pub groups: &'a [String],
    pub disabled: bool,
    pub created: String,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        UserView {
            id: &u.id,
            tenant: &u.tenant,
            name: &u.name,
            policies: &u.policies,
            groups: &u.groups,
            disabled: u.disabled,
            created: crate::swr::rfc3339(u.created),
        }
    }
}

/// An access key as listed (never the secret).
#[derive(Serialize)]
pub struct KeyView<'a> {
    pub access: &'a str,
    pub user: &'a str,
    pub status: &'static str,
    pub description: &'a str,
    pub created: String,
}

impl<'a> From<&'a AccessKey> for KeyView<'a> {
    fn from(k: &'a AccessKey) -> Self {
        KeyView {
            access: &k.ak,
            user: &k.user,
            status: if k.active { "active" } else { "inactive" },
            description: &k.description,
            created: crate::swr::rfc3339(k.created),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(tenant: &str, user: &str, admin: bool) -> Principal {
        Principal {
            tenant: tenant.into(),
            user: user.into(),
            user_id: "id".into(),
            admin,
            policies: vec![],
            access_key: None,
        }
    }

    #[test]
    fn who_administers_what() {
        let system = who(SYSTEM_TENANT, "admin", true);
        let acme_admin = who("acme", "ops", true);
        let acme_user = who("acme", "dev", false);
        assert!(may_manage_tenants(&system));
        assert!(!may_manage_tenants(&acme_admin));
        assert!(may_administer(&system, "acme"));
        assert!(may_administer(&acme_admin, "acme"));
        assert!(!may_administer(&acme_admin, "rival"));
        assert!(!may_administer(&acme_user, "acme"));
        assert!(may_manage_credentials_of(&acme_user, "acme", "dev"));
        assert!(!may_manage_credentials_of(&acme_user, "acme", "ops"));
        assert!(!may_manage_credentials_of(&acme_user, "rival", "dev"));
        // A non-admin of the system tenant is nobody special.
        assert!(!may_administer(&who(SYSTEM_TENANT, "dev", false), "acme"));
    }

    #[test]
    fn random_strings_use_the_alphabet_and_reject_bias() {
        let bytes: Vec<u8> = (0..=255).collect();
        let s = random_string(&bytes, 20, AK_ALPHABET).unwrap();
        assert!(s.bytes().all(|b| AK_ALPHABET.contains(&b)));
        // 36 letters: bytes from 252 up are dropped, not folded onto A-D.
        let high = [252u8, 253, 254, 255, 0];
        assert_eq!(random_string(&high, 1, AK_ALPHABET).as_deref(), Some("A"));
        assert_eq!(random_string(&high[..4], 1, AK_ALPHABET), None);
    }

    #[test]
    fn the_account_user_is_protected() {
        let (_, account, writes) =
            new_tenant("acme", "p".into(), "u".into(), "h".into(), 1).unwrap();
        assert_eq!(writes.len(), 4);
        assert!(delete_user_writes(&account, &[]).is_err());
        assert!(check_account_user_change(&account, None, Some(true)).is_err());
        assert!(
            check_account_user_change(&account, Some(&["SWR FullAccess".into()]), None).is_err()
        );
        assert!(
            check_account_user_change(&account, Some(&[TENANT_ADMIN_ROLE.into()]), None).is_ok()
        );
        assert!(new_tenant("bad name", "p".into(), "u".into(), "h".into(), 1).is_err());
        assert!(check_user_name("acme", "acme").is_err());
        assert!(check_user_name("acme", "dev").is_ok());
    }

    #[test]
    fn deleting_a_user_removes_its_keys() {
        let (_, mut user, _) = new_tenant("acme", "p".into(), "u".into(), "h".into(), 1).unwrap();
        user.name = "dev".into();
        let writes = delete_user_writes(&user, &["AK1".into()]).unwrap();
        assert!(writes.contains(&Write::Delete(records::access_key("AK1"))));
        assert!(writes.contains(&Write::Delete(records::user_id("u"))));
    }

    #[test]
    fn references_skip_system_policies() {
        let refs = references(
            "acme",
            &["SWR FullAccess".into(), "mine".into()],
            &["ops".into()],
        );
        let keys: Vec<&str> = refs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["iam/policy/acme/mine", "iam/group/acme/ops"]);
    }

    #[test]
    fn key_limit_and_policy_names() {
        assert!(new_access_key("t", "u", "A".into(), "s".into(), "".into(), MAX_KEYS, 1).is_err());
        assert!(new_access_key("t", "u", "A".into(), "s".into(), "".into(), 1, 1).is_ok());
        let doc = r#"{"Version":"1.1","Statement":[{"Effect":"Allow","Action":["swr:*:*"]}]}"#;
        assert!(new_policy("SWR FullAccess", "".into(), doc, 1).is_err());
        assert!(new_policy("mine", "".into(), "{", 1).is_err());
        assert!(new_policy("mine", "".into(), doc, 1).is_ok());
    }

    #[test]
    fn deleting_a_group_or_policy_detaches_it() {
        let (_, mut dev, _) = new_tenant("acme", "p".into(), "u".into(), "h".into(), 1).unwrap();
        dev.name = "dev".into();
        dev.groups = vec!["ops".into(), "qa".into()];
        dev.policies = vec!["mine".into()];
        let mut other = dev.clone();
        other.name = "other".into();
        other.groups = vec!["qa".into()];
        other.policies = vec![];
        let users = [(dev.clone(), 7), (other, 9)];
        let writes = delete_group_writes("acme", "ops", &users);
        assert_eq!(writes.len(), 2);
        let Write::Replace(key, value, 7) = &writes[1] else {
            panic!("{writes:?}")
        };
        assert_eq!(key, "iam/user/acme/dev");
        let after: User = serde_json::from_slice(value).unwrap();
        assert_eq!(after.groups, ["qa"]);
        let group = new_group("ops", vec!["mine".into(), "SWR FullAccess".into()], 1).unwrap();
        let writes = delete_policy_writes("acme", "mine", &users, &[(group, 3)]);
        assert_eq!(writes.len(), 3);
        let Write::Replace(_, value, 3) = &writes[2] else {
            panic!("{writes:?}")
        };
        let g: Group = serde_json::from_slice(value).unwrap();
        assert_eq!(g.policies, ["SWR FullAccess"]);
    }
}
