//! Administering identities from the command line (`berth iam …`) and the
//! bootstrap administrator created on first start. Records and rules are
//! the domain's (`berth_domain::iam`); this only writes them.

use crate::capabilities::credentials::Credentials;
use crate::capabilities::metadata::{MetaError, Metadata, Precondition, WriteOp};
use anyhow::{Context, Result, bail};
use berth_domain::iam::admin::{self, Write};
use berth_domain::iam::records::{self, AccessKey, CustomPolicy, Group, Tenant, User};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum IamCommand {
    /// Create the administrator ("admin", password from
    /// BERTH_ADMIN_PASSWORD or printed) when the stores have no tenant yet,
    /// as `berth serve` does at start: run it once against the stores of a
    /// Spin build, which has no start of its own.
    Bootstrap,
    /// Create a tenant (an account) and its account user, named like it.
    TenantCreate {
        name: String,
        /// The account user's password (default: generated and printed).
        #[arg(long)]
        password: Option<String>,
    },
    /// Create an IAM user in a tenant (log in as `user@tenant`).
    UserCreate {
        tenant: String,
        name: String,
        #[arg(long)]
        password: Option<String>,
        /// System policy or role ("SWR FullAccess", "SWR OperateAccess",
        /// "SWR ReadOnlyAccess", "SWR Admin", "Tenant Administrator") or a
        /// custom policy name; repeatable.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Group to join; repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Replace a user's policies and groups, or disable/enable the user.
    UserSet {
        tenant: String,
        name: String,
        #[arg(long = "policy")]
        policies: Option<Vec<String>>,
        #[arg(long = "group")]
        groups: Option<Vec<String>>,
        #[arg(long)]
        disabled: Option<bool>,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete a user and its access keys (not the account user).
    UserDelete { tenant: String, name: String },
    /// List a tenant's users.
    UserList { tenant: String },
    /// List tenants.
    TenantList,
    /// List a tenant's groups.
    GroupList { tenant: String },
    /// Replace a group's policies.
    GroupSet {
        tenant: String,
        name: String,
        #[arg(long = "policy")]
        policies: Vec<String>,
    },
    /// Delete a group (and take it out of its members' lists).
    GroupDelete { tenant: String, name: String },
    /// List a tenant's custom policies.
    PolicyList { tenant: String },
    /// Delete a custom policy (and detach it from users and groups).
    PolicyDelete { tenant: String, name: String },
    /// Create a user group with policies.
    GroupCreate {
        tenant: String,
        name: String,
        #[arg(long = "policy")]
        policies: Vec<String>,
    },
    /// Create a custom policy from a JSON document (a file, or - for stdin).
    PolicyCreate {
        tenant: String,
        name: String,
        document: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Create an access key (AK/SK) for a user; the SK is printed once.
    KeyCreate {
        tenant: String,
        user: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a user's access keys.
    KeyList { tenant: String, user: String },
    /// Disable or enable an access key.
    KeySet {
        ak: String,
        /// true or false.
        #[arg(long, action = clap::ArgAction::Set)]
        active: bool,
    },
    /// Delete an access key.
    KeyDelete { ak: String },
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random_string(len: usize, alphabet: &[u8]) -> Result<String> {
    let mut bytes = vec![0u8; len * 2];
    loop {
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        if let Some(s) = admin::random_string(&bytes, len, alphabet) {
            return Ok(s);
        }
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(m: &Metadata, key: &str) -> Result<Option<T>> {
    match m.get(key).await? {
        Some(e) => Ok(Some(serde_json::from_slice(&e.value)?)),
        None => Ok(None),
    }
}

fn put<T: serde::Serialize>(key: String, v: &T, pre: Precondition) -> WriteOp {
    WriteOp::Put(key, serde_json::to_vec(v).expect("records serialize"), pre)
}

/// Applies the domain's writes; a failed precondition names `what`.
async fn apply(m: &Metadata, writes: Vec<Write>, what: &str) -> Result<()> {
    let ops = writes
        .into_iter()
        .map(|w| match w {
            Write::Create(k, v) => WriteOp::Put(k, v, Precondition::Absent),
            Write::Replace(k, v, version) => WriteOp::Put(k, v, Precondition::Version(version)),
            Write::Put(k, v) => WriteOp::Put(k, v, Precondition::None),
            Write::Delete(k) => WriteOp::Delete(k, Precondition::None),
        })
        .collect();
    m.commit(ops).await.map_err(|e| match e {
        MetaError::Conflict => anyhow::anyhow!("{what} already exists or changed meanwhile"),
        e => e.into(),
    })?;
    Ok(())
}

async fn check_references(
    m: &Metadata,
    tenant: &str,
    policies: &[String],
    groups: &[String],
) -> Result<()> {
    for (key, missing) in admin::references(tenant, policies, groups) {
        if m.get(&key).await?.is_none() {
            bail!("{missing}");
        }
    }
    Ok(())
}

/// Creates a tenant and its account user; returns the password used.
pub async fn create_tenant(
    m: &Metadata,
    c: &Credentials,
    name: &str,
    password: Option<String>,
) -> Result<(Tenant, String)> {
    let password = match password {
        Some(p) => p,
        None => random_string(admin::PASSWORD_LEN, admin::SECRET_ALPHABET)?,
    };
    admin::check_password(&password)?;
    let (tenant, _, writes) = admin::new_tenant(
        name,
        random_string(admin::ID_LEN, admin::ID_ALPHABET)?,
        random_string(admin::ID_LEN, admin::ID_ALPHABET)?,
        c.hash_password(password.clone()).await?,
        now(),
    )?;
    apply(m, writes, &format!("tenant {name}")).await?;
    Ok((tenant, password))
}

/// On first start (no tenant yet) creates the system tenant `admin`, whose
/// account user `admin` administers every tenant. The password comes from
/// `BERTH_ADMIN_PASSWORD`, or is generated and printed this once.
pub async fn bootstrap(m: &Metadata, c: &Credentials) -> Result<()> {
    // A store with no manifest and no blob link yet has nothing for garbage
    // collection to index: writers keep the index from the first push.
    use berth_domain::gc;
    if m.get(gc::INDEXED).await?.is_none()
        && m.scan("manifest/", None, 1).await?.is_empty()
        && m.scan("blob/", None, 1).await?.is_empty()
    {
        m.commit(vec![WriteOp::Put(
            gc::INDEXED.into(),
            gc::INDEX_VERSION.to_string().into_bytes(),
            Precondition::Absent,
        )])
        .await
        .or_else(|e| match e {
            MetaError::Conflict => Ok(Vec::new()),
            e => Err(e),
        })?;
    }
    if !m.scan("iam/tenant/", None, 1).await?.is_empty() {
        return Ok(());
    }
    let given = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let printed = given.is_none();
    let (tenant, password) = match create_tenant(m, c, admin::SYSTEM_TENANT, given).await {
        Ok(created) => created,
        // Another host sharing the metadata bootstrapped it meanwhile.
        Err(_) if !m.scan("iam/tenant/", None, 1).await?.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    if printed {
        eprintln!(
            "\nCreated the administrator account. Log in as user \"admin\" with password:\n\n    {password}\n\n(shown once; set BERTH_ADMIN_PASSWORD to choose it). Project id: {}\n",
            tenant.project_id
        );
    }
    tracing::info!(project_id = %tenant.project_id, "bootstrap administrator \"admin\" created");
    Ok(())
}

pub async fn run(m: &Metadata, c: &Credentials, cmd: IamCommand) -> Result<()> {
    match cmd {
        IamCommand::Bootstrap => {
            if m.scan("iam/tenant/", None, 1).await?.is_empty() {
                bootstrap(m, c).await?;
                println!("administrator \"admin\" created");
            } else {
                println!("the stores already have tenants: nothing to do");
            }
        }
        IamCommand::TenantCreate { name, password } => {
            let given = password.is_some();
            let (t, password) = create_tenant(m, c, &name, password).await?;
            println!("tenant {}\nproject_id {}", t.name, t.project_id);
            if !given {
                println!("password {password}");
            }
        }
        IamCommand::UserCreate {
            tenant,
            name,
            password,
            policies,
            groups,
        } => {
            if get_json::<Tenant>(m, &records::tenant(&tenant))
                .await?
                .is_none()
            {
                bail!("no tenant {tenant}");
            }
            admin::check_user_name(&tenant, &name)?;
            check_references(m, &tenant, &policies, &groups).await?;
            let generated = password.is_none();
            let password = match password {
                Some(p) => p,
                None => random_string(admin::PASSWORD_LEN, admin::SECRET_ALPHABET)?,
            };
            admin::check_password(&password)?;
            let user = User {
                id: random_string(admin::ID_LEN, admin::ID_ALPHABET)?,
                tenant: tenant.clone(),
                name: name.clone(),
                password: Some(c.hash_password(password.clone()).await?),
                policies,
                groups,
                disabled: false,
                created: now(),
            };
            apply(m, admin::user_writes(&user), &format!("user {name}")).await?;
            println!("user {name}@{tenant}\nid {}", user.id);
            if generated {
                println!("password {password}");
            }
        }
        IamCommand::UserSet {
            tenant,
            name,
            policies,
            groups,
            disabled,
            password,
        } => {
            let key = records::user(&tenant, &name);
            let entry = m
                .get(&key)
                .await?
                .with_context(|| format!("no user {name}@{tenant}"))?;
            let mut user: User = serde_json::from_slice(&entry.value)?;
            admin::check_account_user_change(&user, policies.as_deref(), disabled)?;
            check_references(
                m,
                &tenant,
                policies.as_deref().unwrap_or_default(),
                groups.as_deref().unwrap_or_default(),
            )
            .await?;
            if let Some(p) = policies {
                user.policies = p;
            }
            if let Some(g) = groups {
                user.groups = g;
            }
            if let Some(d) = disabled {
                user.disabled = d;
            }
            if let Some(p) = password {
                admin::check_password(&p)?;
                user.password = Some(c.hash_password(p).await?);
            }
            m.commit(vec![put(key, &user, Precondition::Version(entry.version))])
                .await?;
            println!("updated {name}@{tenant}");
        }
        IamCommand::UserDelete { tenant, name } => {
            let user: User = get_json(m, &records::user(&tenant, &name))
                .await?
                .with_context(|| format!("no user {name}@{tenant}"))?;
            let keys = access_keys(m, &tenant, &name).await?;
            apply(m, admin::delete_user_writes(&user, &keys)?, "user").await?;
            println!("deleted {name}@{tenant}");
        }
        IamCommand::UserList { tenant } => {
            for e in m.scan(&records::user_prefix(&tenant), None, 10_000).await? {
                let u: User = serde_json::from_slice(&e.value)?;
                println!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    u.id,
                    if u.disabled { "disabled" } else { "active" },
                    u.policies.join(",")
                );
            }
        }
        IamCommand::TenantList => {
            for e in m.scan("iam/tenant/", None, 100_000).await? {
                let t: Tenant = serde_json::from_slice(&e.value)?;
                println!("{}\t{}", t.name, t.project_id);
            }
        }
        IamCommand::GroupList { tenant } => {
            for (g, _) in versioned_all::<Group>(m, &records::group_prefix(&tenant)).await? {
                println!("{}\t{}", g.name, g.policies.join(","));
            }
        }
        IamCommand::GroupSet {
            tenant,
            name,
            policies,
        } => {
            let key = records::group(&tenant, &name);
            let entry = m
                .get(&key)
                .await?
                .with_context(|| format!("no group {name} in {tenant}"))?;
            let mut g: Group = serde_json::from_slice(&entry.value)?;
            check_references(m, &tenant, &policies, &[]).await?;
            g.policies = policies;
            apply(
                m,
                vec![Write::Replace(key, serde_json::to_vec(&g)?, entry.version)],
                "group",
            )
            .await?;
            println!("updated group {name}");
        }
        IamCommand::GroupDelete { tenant, name } => {
            if m.get(&records::group(&tenant, &name)).await?.is_none() {
                bail!("no group {name} in {tenant}");
            }
            let users = versioned_all::<User>(m, &records::user_prefix(&tenant)).await?;
            apply(
                m,
                admin::delete_group_writes(&tenant, &name, &users),
                "group",
            )
            .await?;
            println!("deleted group {name}");
        }
        IamCommand::PolicyList { tenant } => {
            for (p, _) in versioned_all::<CustomPolicy>(m, &records::policy_prefix(&tenant)).await?
            {
                println!("{}\t{}", p.name, serde_json::to_string(&p.document)?);
            }
        }
        IamCommand::PolicyDelete { tenant, name } => {
            if m.get(&records::policy(&tenant, &name)).await?.is_none() {
                bail!("no custom policy {name} in {tenant}");
            }
            let users = versioned_all::<User>(m, &records::user_prefix(&tenant)).await?;
            let groups = versioned_all::<Group>(m, &records::group_prefix(&tenant)).await?;
            apply(
                m,
                admin::delete_policy_writes(&tenant, &name, &users, &groups),
                "policy",
            )
            .await?;
            println!("deleted policy {name}");
        }
        IamCommand::GroupCreate {
            tenant,
            name,
            policies,
        } => {
            check_references(m, &tenant, &policies, &[]).await?;
            let g = admin::new_group(&name, policies, now())?;
            apply(
                m,
                vec![Write::Create(
                    records::group(&tenant, &name),
                    serde_json::to_vec(&g)?,
                )],
                &format!("group {name}"),
            )
            .await?;
            println!("group {name}");
        }
        IamCommand::PolicyCreate {
            tenant,
            name,
            document,
            description,
        } => {
            let text = if document == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&document)?
            };
            let p = admin::new_policy(&name, description, &text, now())?;
            apply(
                m,
                vec![Write::Put(
                    records::policy(&tenant, &name),
                    serde_json::to_vec(&p)?,
                )],
                "policy",
            )
            .await?;
            println!("policy {name}");
        }
        IamCommand::KeyCreate {
            tenant,
            user,
            description,
        } => {
            let (ak, sk) = create_key(m, c, &tenant, &user, &description).await?;
            println!("ak {ak}\nsk {sk}");
        }
        IamCommand::KeyList { tenant, user } => {
            for ak in access_keys(m, &tenant, &user).await? {
                if let Some(k) = get_json::<AccessKey>(m, &records::access_key(&ak)).await? {
                    println!(
                        "{}\t{}\t{}",
                        k.ak,
                        if k.active { "active" } else { "inactive" },
                        k.description
                    );
                }
            }
        }
        IamCommand::KeySet { ak, active } => {
            let key = records::access_key(&ak);
            let entry = m
                .get(&key)
                .await?
                .with_context(|| format!("no access key {ak}"))?;
            let mut k: AccessKey = serde_json::from_slice(&entry.value)?;
            k.active = active;
            m.commit(vec![put(key, &k, Precondition::Version(entry.version))])
                .await?;
            println!("{ak} {}", if active { "active" } else { "inactive" });
        }
        IamCommand::KeyDelete { ak } => {
            let k: AccessKey = get_json(m, &records::access_key(&ak))
                .await?
                .with_context(|| format!("no access key {ak}"))?;
            apply(m, admin::delete_access_key_writes(&k), "access key").await?;
            println!("deleted {ak}");
        }
    }
    Ok(())
}

/// Every record under `prefix` with the version it was read at.
async fn versioned_all<T: serde::de::DeserializeOwned>(
    m: &Metadata,
    prefix: &str,
) -> Result<Vec<(T, u64)>> {
    m.scan(prefix, None, 100_000)
        .await?
        .into_iter()
        .map(|e| Ok((serde_json::from_slice(&e.value)?, e.version)))
        .collect()
}

/// The ids of a user's access keys.
async fn access_keys(m: &Metadata, tenant: &str, user: &str) -> Result<Vec<String>> {
    let prefix = records::user_access_key_prefix(tenant, user);
    Ok(m.scan(&prefix, None, 10_000)
        .await?
        .into_iter()
        .map(|e| e.key[prefix.len()..].to_string())
        .collect())
}

/// Creates an access key for a user; returns (AK, SK). Only the sealed SK
/// is stored.
pub async fn create_key(
    m: &Metadata,
    c: &Credentials,
    tenant: &str,
    user: &str,
    description: &str,
) -> Result<(String, String)> {
    if m.get(&records::user(tenant, user)).await?.is_none() {
        bail!("no user {user} in tenant {tenant}");
    }
    let ak = random_string(admin::AK_LEN, admin::AK_ALPHABET)?;
    let sk = random_string(admin::SK_LEN, admin::SECRET_ALPHABET)?;
    let (_, writes) = admin::new_access_key(
        tenant,
        user,
        ak.clone(),
        hex::encode(c.seal(sk.as_bytes())),
        description.into(),
        access_keys(m, tenant, user).await?.len(),
        now(),
    )?;
    apply(m, writes, "access key").await?;
    Ok((ak, sk))
}
