//! Identity and authorization: tenants (SWR's "domain"), IAM users and
//! groups, policies, organization and repository grants, and the one
//! decision every `/v2/` and management request goes through ([`decide`]).

pub mod action;
pub mod admin;
pub mod docker;
pub mod policy;
pub mod records;
pub mod signing;

pub use action::{Action, Level};
pub use policy::{Effect, PolicyDocument};

/// The system policies and roles of SWR (seed, chapter 7). Roles are
/// administrator flags, not documents: see [`is_admin_role`].
pub const FULL_ACCESS: &str = "SWR FullAccess";
pub const OPERATE_ACCESS: &str = "SWR OperateAccess";
pub const READ_ONLY_ACCESS: &str = "SWR ReadOnlyAccess";
pub const ADMIN_ROLE: &str = "SWR Admin";
pub const TENANT_ADMIN_ROLE: &str = "Tenant Administrator";

/// The document of a system policy, by name.
pub fn system_policy(name: &str) -> Option<PolicyDocument> {
    let actions: Vec<&str> = match name {
        FULL_ACCESS => vec!["swr:*:*"],
        // Every operation of the seed's table 7-3; new kinds of resource
        // (e.g. instance settings) stay with FullAccess.
        OPERATE_ACCESS => vec!["swr:repository:*", "swr:namespace:*"],
        READ_ONLY_ACCESS => vec!["swr:*:get", "swr:*:list", "swr:repository:pull"],
        _ => return None,
    };
    Some(PolicyDocument {
        version: "1.1".into(),
        statement: vec![policy::Statement {
            effect: Effect::Allow,
            action: policy::OneOrMany::Many(actions.into_iter().map(String::from).collect()),
            resource: None,
        }],
    })
}

pub fn is_admin_role(name: &str) -> bool {
    name == ADMIN_ROLE || name == TENANT_ADMIN_ROLE
}

pub fn is_system_name(name: &str) -> bool {
    system_policy(name).is_some() || is_admin_role(name)
}

/// Who is asking, resolved from a credential: the tenant, the user, and
/// everything their policies and groups give (union; deny wins).
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub tenant: String,
    pub user: String,
    pub user_id: String,
    /// The account itself, or a user with an administrator role.
    pub admin: bool,
    pub policies: Vec<PolicyDocument>,
    /// The access key the caller proved, if it used one (what it issues,
    /// such as temporary logins, lives only as long as that key).
    pub access_key: Option<String>,
}

/// What the store says about the organization or repository at stake.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Tenant owning the organization; `None` if it does not exist.
    pub owner: Option<String>,
    /// The repository is public (anyone may pull).
    pub public: bool,
    /// The caller's grant on the organization, and on the repository.
    pub namespace_grant: Option<Level>,
    pub repository_grant: Option<Level>,
    /// The repository is shared with the caller's tenant (read), unexpired.
    pub shared: bool,
}

/// Whether `who` (or an anonymous caller) may do `action` on `resource`
/// (a policy resource name, see [`action::repository_resource`]).
///
/// Order: another tenant's resources are readable only when public or
/// shared; an explicit deny in any of the caller's policies wins; then
/// administrators, policy allows and grants each suffice; public
/// repositories are readable by everyone.
pub fn decide(who: Option<&Principal>, action: Action, resource: &str, facts: &Facts) -> bool {
    decide_basis(who, action, resource, facts).is_some()
}

/// [`decide`], saying what an allow rests on: what must still hold for a
/// decision kept beyond this request (a registry token) to stay valid.
pub fn decide_basis(
    who: Option<&Principal>,
    action: Action,
    resource: &str,
    facts: &Facts,
) -> Option<Basis> {
    let public_read = (action.is_read() && facts.public).then_some(Basis::Public);
    let Some(p) = who else {
        return public_read;
    };
    let effects: Vec<Effect> = p
        .policies
        .iter()
        .filter_map(|d| d.effect(action, resource))
        .collect();
    if effects.contains(&Effect::Deny) {
        return None;
    }
    let own = match &facts.owner {
        Some(owner) => owner == &p.tenant,
        // Nothing there yet (e.g. creating an organization): judged as the
        // caller's own.
        None => true,
    };
    if !own {
        if !action.is_read() {
            return None;
        }
        return public_read.or((facts.shared).then_some(Basis::Shared));
    }
    let granted = p.admin
        || effects.contains(&Effect::Allow)
        || facts
            .namespace_grant
            .max(facts.repository_grant)
            .is_some_and(|l| l.covers(action));
    if granted {
        Some(Basis::Own)
    } else {
        public_read
    }
}

/// What an allow of [`decide_basis`] rests on. Each of these can change
/// after the decision (an organization created or re-created by another
/// tenant, a repository made private, a share ended), so a decision kept
/// for later, such as a registry token's access list, is checked against
/// it again on every use ([`Basis::holds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The caller's own tenant's organization — or none yet, which a push
    /// creates for the caller's tenant: holds while no other tenant owns it.
    Own,
    /// A public repository: holds while it stays public.
    Public,
    /// A repository shared with the caller's tenant: holds while the share
    /// lasts.
    Shared,
}

impl Basis {
    /// Whether the basis still holds for a caller of `tenant` (empty when
    /// anonymous), given the organization's owner, the repository's
    /// visibility and the caller's share as they are now (`facts`; grants
    /// are not consulted: within a tenant, permissions narrowed after a
    /// token was issued apply from the next token).
    pub fn holds(self, tenant: &str, facts: &Facts) -> bool {
        match self {
            Basis::Own => !tenant.is_empty() && facts.owner.as_deref().is_none_or(|o| o == tenant),
            Basis::Public => facts.public,
            Basis::Shared => !tenant.is_empty() && facts.shared,
        }
    }
}

/// Whether `who` may do `action` on every organization and repository of
/// its own tenant whatever the grants say — an administrator, or a policy
/// allowing it on every resource — with no deny statement anywhere (a deny
/// may name some repositories). Listings use it to skip per-repository
/// decisions.
pub fn whole_tenant(who: &Principal, action: Action) -> bool {
    let statements = || who.policies.iter().flat_map(|d| d.statement.iter());
    if statements().any(|s| s.effect == Effect::Deny) {
        return false;
    }
    who.admin
        || statements().any(|s| {
            s.resource.is_none() && s.action.iter().any(|a| policy::glob(a, action.name()))
        })
}

/// The strongest permission `who` effectively has on `resource` (what SWR
/// reports as `auth`: 7 manage, 3 edit, 1 read).
pub fn effective_level(who: Option<&Principal>, resource: &str, facts: &Facts) -> Option<Level> {
    [
        (Action::Grant, Level::Manage),
        (Action::Push, Level::Edit),
        (Action::GetNamespace, Level::Read),
    ]
    .into_iter()
    .find(|(a, _)| decide(who, *a, resource, facts))
    .map(|(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::action::repository_resource as repo;
    use super::*;

    fn user(tenant: &str, policies: &[&str]) -> Principal {
        Principal {
            tenant: tenant.into(),
            user: "u".into(),
            user_id: "id".into(),
            admin: false,
            policies: policies.iter().filter_map(|n| system_policy(n)).collect(),
            access_key: None,
        }
    }

    fn own(tenant: &str) -> Facts {
        Facts {
            owner: Some(tenant.into()),
            ..Facts::default()
        }
    }

    /// The seed's table 7-3, row by row.
    #[test]
    fn system_policies_follow_the_seed_table() {
        let ops = [
            Action::Push,
            Action::Pull,
            Action::Trigger,
            Action::UpdateRepository,
            Action::Share,
            Action::Grant,
            Action::Delete,
            Action::Sync,
            Action::CreateNamespace,
            Action::DeleteNamespace,
        ];
        let r = repo("ns/app");
        for op in ops {
            for p in [FULL_ACCESS, OPERATE_ACCESS] {
                assert!(
                    decide(Some(&user("t", &[p])), op, &r, &own("t")),
                    "{p} {op:?}"
                );
            }
            assert_eq!(
                decide(Some(&user("t", &[READ_ONLY_ACCESS])), op, &r, &own("t")),
                op == Action::Pull,
                "ReadOnly {op:?}"
            );
            let admin = Principal {
                admin: true,
                ..user("t", &[])
            };
            assert!(decide(Some(&admin), op, &r, &own("t")));
            // A user with nothing attached can do nothing.
            assert!(!decide(Some(&user("t", &[])), op, &r, &own("t")));
        }
    }

    #[test]
    fn grants_cover_their_level() {
        let r = repo("ns/app");
        let with = |ns: Option<Level>, rp: Option<Level>| Facts {
            namespace_grant: ns,
            repository_grant: rp,
            ..own("t")
        };
        let u = user("t", &[]);
        assert!(decide(
            Some(&u),
            Action::Pull,
            &r,
            &with(None, Some(Level::Read))
        ));
        assert!(!decide(
            Some(&u),
            Action::Push,
            &r,
            &with(None, Some(Level::Read))
        ));
        assert!(decide(
            Some(&u),
            Action::Push,
            &r,
            &with(Some(Level::Edit), Some(Level::Read))
        ));
        assert!(!decide(
            Some(&u),
            Action::Delete,
            &r,
            &with(Some(Level::Edit), None)
        ));
        assert!(decide(
            Some(&u),
            Action::Delete,
            &r,
            &with(None, Some(Level::Manage))
        ));
        // No grant creates organizations.
        assert!(!decide(
            Some(&u),
            Action::CreateNamespace,
            &r,
            &with(Some(Level::Manage), None)
        ));
    }

    #[test]
    fn tenants_are_isolated() {
        let r = repo("ns/app");
        let other = user("other", &[FULL_ACCESS]);
        let admin_other = Principal {
            admin: true,
            ..other.clone()
        };
        for a in Action::ALL {
            assert!(!decide(Some(&other), a, &r, &own("t")), "{a:?}");
            assert!(!decide(Some(&admin_other), a, &r, &own("t")), "{a:?}");
        }
        // Public: anyone reads, nobody else writes.
        let public = Facts {
            public: true,
            ..own("t")
        };
        assert!(decide(None, Action::Pull, &r, &public));
        assert!(decide(Some(&other), Action::Pull, &r, &public));
        assert!(!decide(None, Action::Push, &r, &public));
        assert!(!decide(Some(&admin_other), Action::Push, &r, &public));
        assert!(!decide(None, Action::Pull, &r, &own("t")));
        // Shared with the caller's tenant: read only.
        let shared = Facts {
            shared: true,
            ..own("t")
        };
        assert!(decide(Some(&other), Action::Pull, &r, &shared));
        assert!(!decide(Some(&other), Action::Push, &r, &shared));
        assert!(!decide(None, Action::Pull, &r, &shared));
    }

    /// The case of the cross-tenant hole: a decision taken while an
    /// organization did not exist does not survive another tenant creating it.
    #[test]
    fn kept_decisions_rest_on_what_can_change() {
        let r = repo("later/app");
        let b = user("b", &[FULL_ACCESS]);
        let nothing = Facts::default();
        assert_eq!(
            decide_basis(Some(&b), Action::Delete, &r, &nothing),
            Some(Basis::Own)
        );
        assert!(Basis::Own.holds("b", &nothing));
        assert!(Basis::Own.holds("b", &own("b")));
        assert!(!Basis::Own.holds("b", &own("a")));
        assert!(!Basis::Own.holds("", &nothing));
        // Another tenant's public repository: readable while public.
        let public = Facts {
            public: true,
            ..own("a")
        };
        assert_eq!(
            decide_basis(Some(&b), Action::Pull, &r, &public),
            Some(Basis::Public)
        );
        assert_eq!(
            decide_basis(None, Action::Pull, &r, &public),
            Some(Basis::Public)
        );
        assert!(!Basis::Public.holds("b", &own("a")));
        // Shared: while the share lasts.
        let shared = Facts {
            shared: true,
            ..own("a")
        };
        assert_eq!(
            decide_basis(Some(&b), Action::Pull, &r, &shared),
            Some(Basis::Shared)
        );
        assert!(!Basis::Shared.holds("b", &own("a")));
        // Own tenant, no permission, public repository: rests on it being public.
        let nobody = user("a", &[]);
        assert_eq!(
            decide_basis(Some(&nobody), Action::Pull, &r, &public),
            Some(Basis::Public)
        );
        assert_eq!(
            decide_basis(
                Some(&user("a", &[READ_ONLY_ACCESS])),
                Action::Pull,
                &r,
                &public
            ),
            Some(Basis::Own)
        );
    }

    #[test]
    fn deny_wins_over_everything() {
        let deny = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Deny","Action":["swr:repository:delete"],"Resource":["swr:*:*:repository:prod/*"]}]}"#,
        )
        .unwrap();
        let mut u = user("t", &[FULL_ACCESS]);
        u.policies.push(deny);
        u.admin = true;
        let grant = Facts {
            repository_grant: Some(Level::Manage),
            ..own("t")
        };
        assert!(!decide(Some(&u), Action::Delete, &repo("prod/app"), &grant));
        assert!(decide(Some(&u), Action::Delete, &repo("dev/app"), &grant));
        assert!(decide(Some(&u), Action::Push, &repo("prod/app"), &grant));
    }

    #[test]
    fn union_of_policies() {
        let pull_a = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"swr:repository:pull","Resource":"swr:*:*:repository:a/*"}]}"#,
        )
        .unwrap();
        let push_b = PolicyDocument::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":["swr:repository:push","swr:repository:pull"],"Resource":"swr:*:*:repository:b/*"}]}"#,
        )
        .unwrap();
        let mut u = user("t", &[]);
        u.policies = vec![pull_a, push_b];
        assert!(decide(Some(&u), Action::Pull, &repo("a/x"), &own("t")));
        assert!(!decide(Some(&u), Action::Push, &repo("a/x"), &own("t")));
        assert!(decide(Some(&u), Action::Push, &repo("b/x"), &own("t")));
    }

    #[test]
    fn who_acts_on_a_whole_tenant() {
        let mut full = user("acme", &[FULL_ACCESS]);
        assert!(whole_tenant(&full, Action::Pull));
        assert!(whole_tenant(
            &user("acme", &[READ_ONLY_ACCESS]),
            Action::Pull
        ));
        assert!(!whole_tenant(&user("acme", &[]), Action::Pull));
        assert!(whole_tenant(
            &user("acme", &[READ_ONLY_ACCESS]),
            Action::GetRepository
        ));
        assert!(!whole_tenant(
            &user("acme", &[READ_ONLY_ACCESS]),
            Action::Push
        ));
        let mut admin = user("acme", &[]);
        admin.admin = true;
        assert!(whole_tenant(&admin, Action::Pull));
        // A deny anywhere means deciding repository by repository.
        full.policies.push(
            PolicyDocument::parse(
                r#"{"Statement":[{"Effect":"Deny","Action":["swr:repository:delete"],"Resource":["swr:*:*:repository:mx/*"]}]}"#,
            )
            .unwrap(),
        );
        assert!(!whole_tenant(&full, Action::Pull));
        // An allow limited to some repositories is not the whole tenant.
        let mut some = user("acme", &[]);
        some.policies.push(
            PolicyDocument::parse(
                r#"{"Statement":[{"Effect":"Allow","Action":["swr:repository:pull"],"Resource":["swr:*:*:repository:mx/*"]}]}"#,
            )
            .unwrap(),
        );
        assert!(!whole_tenant(&some, Action::Pull));
    }
}
