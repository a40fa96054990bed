//! Administering identities from the command line (`berth iam …`) and the
//! bootstrap administrator created on first start. Records and rules are
//! the domain's (`berth_domain::iam`); this only writes them.

use crate::capabilities::credentials::Credentials;
use crate::capabilities::metadata::{Metadata, Precondition, WriteOp};
use anyhow::{Context, Result, bail};
use berth_domain::iam::records::{self, AccessKey, CustomPolicy, Group, Tenant, User};
use berth_domain::iam::{self, PolicyDocument};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum IamCommand {
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
    /// List a tenant's users.
    UserList { tenant: String },
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
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect())
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn get_json<T: serde::de::DeserializeOwned>(m: &Metadata, key: &str) -> Result<Option<T>> {
    match m.get(key)? {
        Some(e) => Ok(Some(serde_json::from_slice(&e.value)?)),
        None => Ok(None),
    }
}

fn put<T: serde::Serialize>(key: String, v: &T, pre: Precondition) -> WriteOp {
    WriteOp::Put(key, serde_json::to_vec(v).expect("records serialize"), pre)
}

fn check_policies(m: &Metadata, tenant: &str, names: &[String]) -> Result<()> {
    for n in names {
        if !iam::is_system_name(n) && m.get(&records::policy(tenant, n))?.is_none() {
            bail!("no system or custom policy named {n:?} in tenant {tenant}");
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
    if !records::valid_identity_name(name) || name.contains('@') {
        bail!("{name:?} is not a valid tenant name (letters, digits, - _ ., up to 64)");
    }
    let password = match password {
        Some(p) => p,
        None => random_string(24, ALNUM)?,
    };
    let tenant = Tenant {
        name: name.into(),
        project_id: random_string(32, b"0123456789abcdef")?,
        created: now(),
    };
    let user = User {
        id: random_string(32, b"0123456789abcdef")?,
        tenant: name.into(),
        name: name.into(),
        password: Some(c.hash_password(password.clone()).await?),
        policies: vec![iam::TENANT_ADMIN_ROLE.into()],
        groups: vec![],
        disabled: false,
        created: now(),
    };
    m.commit(vec![
        put(records::tenant(name), &tenant, Precondition::Absent),
        put(
            records::project(&tenant.project_id),
            &name.to_string(),
            Precondition::Absent,
        ),
        put(records::user(name, name), &user, Precondition::Absent),
        put(
            records::user_id(&user.id),
            &format!("{name}/{name}"),
            Precondition::Absent,
        ),
    ])
    .await
    .map_err(|e| match e {
        crate::capabilities::metadata::MetaError::Conflict => {
            anyhow::anyhow!("tenant {name} already exists")
        }
        e => e.into(),
    })?;
    Ok((tenant, password))
}

/// On first start (no tenant yet) creates the `admin` tenant, whose account
/// user `admin` administers it. The password comes from
/// `BERTH_ADMIN_PASSWORD`, or is generated and printed this once.
pub async fn bootstrap(m: &Metadata, c: &Credentials) -> Result<()> {
    if !m.scan("iam/tenant/", None, 1)?.is_empty() {
        return Ok(());
    }
    let given = std::env::var("BERTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let printed = given.is_none();
    let (tenant, password) = create_tenant(m, c, "admin", given).await?;
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
            if get_json::<Tenant>(m, &records::tenant(&tenant))?.is_none() {
                bail!("no tenant {tenant}");
            }
            if !records::valid_identity_name(&name) || name == tenant {
                bail!("{name:?} is not a valid user name");
            }
            check_policies(m, &tenant, &policies)?;
            for g in &groups {
                if m.get(&records::group(&tenant, g))?.is_none() {
                    bail!("no group {g} in tenant {tenant}");
                }
            }
            let generated = password.is_none();
            let password = match password {
                Some(p) => p,
                None => random_string(24, ALNUM)?,
            };
            let user = User {
                id: random_string(32, b"0123456789abcdef")?,
                tenant: tenant.clone(),
                name: name.clone(),
                password: Some(c.hash_password(password.clone()).await?),
                policies,
                groups,
                disabled: false,
                created: now(),
            };
            m.commit(vec![
                put(records::user(&tenant, &name), &user, Precondition::Absent),
                put(
                    records::user_id(&user.id),
                    &format!("{tenant}/{name}"),
                    Precondition::Absent,
                ),
            ])
            .await
            .with_context(|| format!("user {name} may already exist"))?;
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
                .get(&key)?
                .with_context(|| format!("no user {name}@{tenant}"))?;
            let mut user: User = serde_json::from_slice(&entry.value)?;
            if let Some(p) = policies {
                check_policies(m, &tenant, &p)?;
                user.policies = p;
            }
            if let Some(g) = groups {
                user.groups = g;
            }
            if let Some(d) = disabled {
                user.disabled = d;
            }
            if let Some(p) = password {
                user.password = Some(c.hash_password(p).await?);
            }
            m.commit(vec![put(key, &user, Precondition::Version(entry.version))])
                .await?;
            println!("updated {name}@{tenant}");
        }
        IamCommand::UserList { tenant } => {
            for e in m.scan(&records::user_prefix(&tenant), None, 10_000)? {
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
        IamCommand::GroupCreate {
            tenant,
            name,
            policies,
        } => {
            check_policies(m, &tenant, &policies)?;
            let g = Group {
                name: name.clone(),
                policies,
                created: now(),
            };
            m.commit(vec![put(
                records::group(&tenant, &name),
                &g,
                Precondition::Absent,
            )])
            .await
            .with_context(|| format!("group {name} may already exist"))?;
            println!("group {name}");
        }
        IamCommand::PolicyCreate {
            tenant,
            name,
            document,
            description,
        } => {
            if iam::is_system_name(&name) {
                bail!("{name:?} is a system policy name");
            }
            let text = if document == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&document)?
            };
            let document = PolicyDocument::parse(&text)?;
            let p = CustomPolicy {
                name: name.clone(),
                description,
                document,
                created: now(),
            };
            m.commit(vec![put(
                records::policy(&tenant, &name),
                &p,
                Precondition::None,
            )])
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
            let prefix = records::user_access_key_prefix(&tenant, &user);
            for e in m.scan(&prefix, None, 10_000)? {
                let ak = &e.key[prefix.len()..];
                if let Some(k) = get_json::<AccessKey>(m, &records::access_key(ak))? {
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
                .get(&key)?
                .with_context(|| format!("no access key {ak}"))?;
            let mut k: AccessKey = serde_json::from_slice(&entry.value)?;
            k.active = active;
            m.commit(vec![put(key, &k, Precondition::Version(entry.version))])
                .await?;
            println!("{ak} {}", if active { "active" } else { "inactive" });
        }
        IamCommand::KeyDelete { ak } => {
            let k: AccessKey = get_json(m, &records::access_key(&ak))?
                .with_context(|| format!("no access key {ak}"))?;
            m.commit(vec![
                WriteOp::Delete(records::access_key(&ak), Precondition::None),
                WriteOp::Delete(
                    records::user_access_key(&k.tenant, &k.user, &ak),
                    Precondition::None,
                ),
            ])
            .await?;
            println!("deleted {ak}");
        }
    }
    Ok(())
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
    if m.get(&records::user(tenant, user))?.is_none() {
        bail!("no user {user} in tenant {tenant}");
    }
    let ak = random_string(20, UPPER_DIGITS)?;
    let sk = random_string(40, ALNUM)?;
    let key = AccessKey {
        ak: ak.clone(),
        tenant: tenant.into(),
        user: user.into(),
        sealed_sk: hex::encode(c.seal(sk.as_bytes())),
        active: true,
        description: description.into(),
        created: now(),
    };
    m.commit(vec![
        put(records::access_key(&ak), &key, Precondition::Absent),
        WriteOp::Put(
            records::user_access_key(tenant, user, &ak),
            Vec::new(),
            Precondition::None,
        ),
    ])
    .await?;
    Ok((ak, sk))
}
