//! Repositories, their tags and their grants, as SWR's management API
//! serves them (`{repository}` in paths writes `/` as `$`):
//!
//! - `POST /v2/manage/namespaces/<ns>/repos` create; `GET|PATCH|DELETE …/repos/<repo>`
//! - `GET /v2/manage/repos` and `GET /v3/manage/repos`: listings with filters and paging
//! - `GET|POST …/repos/<repo>/tags`, `GET|DELETE …/tags/<tag>`, `GET /v3/…/tags`
//! - `POST|GET|PATCH|DELETE …/repos/<repo>/access`: grants to users
//! - `GET|POST …/repos/<repo>/retentions`, `GET|PATCH|DELETE …/retentions/<id>`,
//!   `GET …/retentions/histories`: aging rules, see `retentions.rs`
//! - `GET|POST …/repos/<repo>/triggers`, `GET|PATCH|DELETE …/triggers/<name>`:
//!   image triggers, see `triggers.rs`
//! - sharing with other tenants: see `sharing.rs`; usage figures: `usage.rs`

mod retentions;
mod sharing;
mod stats;
mod sync;
mod triggers;
mod usage;

use berth_domain::events::{EventKind, EventRecord};
use berth_domain::iam::records::{self, RepositoryMeta};
use berth_domain::iam::{self, Action, Principal};
use berth_domain::keys;
use berth_domain::swr::{self, SwrError};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{fault, grants, oci_fault, ok_json, parse_body};
use berth_guest::store::{self, Precondition, WriteOp};
use serde::Deserialize;
use spin_sdk::wasip3::http::types::Method;
use stats::{RepoStats, TagField};

berth_guest::manage_endpoint!(
    "berth:registry/repositories-endpoint",
    repositories_api,
    serve
);

async fn serve(req: &Incoming, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let s: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    let full = |ns: &str, repo: &str| format!("{ns}/{}", swr::repository_from_path(repo));
    match (s.as_slice(), &req.method) {
        (["v2", "manage", "repos"], Method::Get) => list(req, who, false).await,
        (["v3", "manage", "repos"], Method::Get) => list(req, who, true).await,
        (["v2", "manage", "namespaces", ns, "repos"], Method::Post) => create(ns, body, who).await,
        (["v2", "manage", "namespaces", ns, "repos", r], m) => {
            let name = full(ns, r);
            match m {
                Method::Get => show(&name, who).await,
                Method::Patch => update(&name, body, who).await,
                Method::Delete => delete(req, &name, who).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        (["v2", "manage", "namespaces", ns, "repos", r, "tags"], Method::Get) => {
            list_tags(req, &full(ns, r), who, false).await
        }
        (["v3", "manage", "namespaces", ns, "repos", r, "tags"], Method::Get) => {
            list_tags(req, &full(ns, r), who, true).await
        }
        (["v2", "manage", "namespaces", ns, "repos", r, "tags"], Method::Post) => {
            create_tag(req, &full(ns, r), body, who).await
        }
        (["v2", "manage", "namespaces", ns, "repos", r, "tags", tag], m) => {
            let name = full(ns, r);
            match m {
                Method::Get => show_tag(&name, tag, who).await,
                Method::Delete => delete_tag(req, &name, tag, who).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        (
            [
                "v2",
                "manage",
                "namespaces",
                ns,
                "repos",
                r,
                "retentions",
                rest @ ..,
            ],
            m,
        ) => retentions::serve(req, ns, &full(ns, r), rest, m, body, who).await,
        (
            [
                "v2",
                "manage",
                "namespaces",
                ns,
                "repos",
                r,
                op @ ("sync_repo" | "sync_images" | "sync_job"),
            ],
            _,
        ) => sync::serve(req, ns, &full(ns, r), op, body, who).await,
        (["v2", "manage", "regions"], Method::Get) => sync::regions(who).await,
        (["v2", "manage", "namespaces", ns, "repos", r, "triggers"], m) => match m {
            Method::Get => triggers::list(ns, &full(ns, r), who).await,
            Method::Post => triggers::create(ns, &full(ns, r), body, who).await,
            _ => Err(SwrError::method_not_allowed()),
        },
        (["v2", "manage", "namespaces", ns, "repos", r, "triggers", t], m) => {
            triggers::one(ns, &full(ns, r), t, m, body, who).await
        }
        (["v2", "manage", "namespaces", ns, "repos", r, "access"], m) => {
            access(&full(ns, r), m, body, who).await
        }
        // `…/access-domains` and `…/access-domains/<tenant>`.
        (
            [
                "v2",
                "manage",
                "namespaces",
                ns,
                "repositories",
                r,
                "access-domains",
                d @ ..,
            ],
            m,
        ) if d.len() <= 1 => {
            sharing::access_domains(&full(ns, r), d.first().copied(), m, body, who).await
        }
        (["v2", "manage", "overview"], Method::Get) => usage::overview(who).await,
        (["v2", "manage", "reports", kind, frequency], Method::Get) => {
            usage::report(who, kind, frequency, req.query("namespace")).await
        }
        (["v2", "manage", "shared-repositories"], Method::Get) => {
            sharing::shared(req, who, false).await
        }
        (["v3", "manage", "shared-repositories"], Method::Get) => {
            sharing::shared(req, who, true).await
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}

/// The repository if `who` may do `action` on it. Repositories of another
/// tenant are "not found" unless public or shared (and then read-only).
pub(crate) async fn authorized(
    name: &str,
    who: &Principal,
    action: Action,
) -> Result<iam::Facts, SwrError> {
    let facts = berth_guest::auth::repository_facts(Some(who), name)
        .await
        .map_err(oci_fault)?;
    let exists = store::exists(&keys::repo(name)).await.map_err(oci_fault)?;
    let resource = iam::action::repository_resource(name);
    let readable = iam::decide(Some(who), Action::GetRepository, &resource, &facts);
    if !exists || !readable {
        return Err(SwrError::not_found(format!("repository {name} not found")));
    }
    if !iam::decide(Some(who), action, &resource, &facts) {
        return Err(SwrError::forbidden(format!(
            "{} on repository {name} is not allowed",
            action.name()
        )));
    }
    Ok(facts)
}

/// [`authorized`], and the caller's tenant owns the repository: who holds
/// grants on it and whom it is shared with are the owner's business, not
/// that of the tenants that may read it (404 for them, as for anything
/// they cannot see).
pub(crate) async fn authorized_owner(
    name: &str,
    who: &Principal,
    action: Action,
) -> Result<iam::Facts, SwrError> {
    let facts = authorized(name, who, action).await?;
    if facts.owner.as_deref() != Some(who.tenant.as_str()) {
        return Err(SwrError::not_found(format!("repository {name} not found")));
    }
    Ok(facts)
}

#[derive(Deserialize)]
struct CreateBody {
    repository: String,
    #[serde(default)]
    is_public: bool,
    #[serde(default)]
    category: String,
    #[serde(default)]
    description: String,
}

async fn create(ns: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    let b: CreateBody = parse_body(body)?;
    let name = format!("{ns}/{}", b.repository);
    if !berth_domain::name::is_valid_name(&name) {
        return Err(SwrError::invalid_name(format!(
            "invalid repository name {:?}",
            b.repository
        )));
    }
    let namespace = store::get_json::<records::Namespace>(&records::namespace(ns))
        .await
        .map_err(oci_fault)?
        .filter(|n| n.tenant == who.tenant)
        .ok_or_else(|| SwrError::not_found(format!("organization {ns} not found")))?;
    let facts = berth_guest::auth::repository_facts(Some(who), &name)
        .await
        .map_err(oci_fault)?;
    if !iam::decide(
        Some(who),
        Action::Push,
        &iam::action::repository_resource(&name),
        &facts,
    ) {
        // An organization the caller may not even see is not found.
        let ns_facts = berth_guest::auth::namespace_facts(Some(who), ns)
            .await
            .map_err(oci_fault)?;
        let ns_resource = iam::action::namespace_resource(ns);
        if !iam::decide(Some(who), Action::GetNamespace, &ns_resource, &ns_facts) {
            return Err(SwrError::not_found(format!("organization {ns} not found")));
        }
        return Err(SwrError::forbidden(format!(
            "creating repositories in {ns} is not allowed"
        )));
    }
    let meta = RepositoryMeta {
        public: b.is_public,
        category: b.category,
        description: b.description,
    };
    let ops = vec![
        WriteOp::Put((
            keys::repo(&name),
            serde_json::to_vec(&keys::RepoRecord {
                created: store::now(),
            })
            .expect("json"),
            Precondition::Absent,
        )),
        store::put(
            records::tenant_repository(&namespace.tenant, &name),
            Vec::new(),
        ),
        store::put_json(records::repository_meta(&name), &meta),
    ];
    match store::commit(ops).await {
        Ok(_) => Ok(Reply::new(201)),
        Err(store::StoreError::Conflict) => Err(SwrError::conflict(format!(
            "repository {name} already exists"
        ))),
        Err(e) => Err(fault(e)),
    }
}

async fn show(name: &str, who: &Principal) -> Result<Reply, SwrError> {
    authorized(name, who, Action::GetRepository).await?;
    let st = RepoStats::load(name).await?;
    let ns = store::get_json::<records::Namespace>(&records::namespace(stats::namespace_of(name)))
        .await
        .map_err(oci_fault)?;
    ok_json(
        200,
        &serde_json::json!({
            "id": swr::numeric_id(name),
            "ns_id": ns.as_ref().map(|n| n.id).unwrap_or(0),
            "name": stats::short_name(name),
            "category": st.meta.category,
            "description": st.meta.description,
            "creator_id": "",
            "creator_name": ns.as_ref().map(|n| n.creator.clone()).unwrap_or_default(),
            "size": st.size,
            "is_public": st.meta.public,
            "num_images": st.tags.len(),
            "num_download": st.downloads,
            "url": "",
            "path": name,
            "internal_path": name,
            "created": swr::rfc3339(st.created),
            "updated": swr::rfc3339(st.updated),
            "domain_id": ns.as_ref().map(|n| n.tenant.clone()).unwrap_or_default(),
            "priority": 0,
        }),
    )
}

#[derive(Deserialize)]
struct UpdateBody {
    is_public: Option<bool>,
    category: Option<String>,
    description: Option<String>,
}

async fn update(name: &str, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    authorized(name, who, Action::UpdateRepository).await?;
    let b: UpdateBody = parse_body(body)?;
    let key = records::repository_meta(name);
    let mut meta: RepositoryMeta = store::get_json(&key)
        .await
        .map_err(oci_fault)?
        .unwrap_or_default();
    if let Some(p) = b.is_public {
        meta.public = p;
    }
    if let Some(c) = b.category {
        meta.category = c;
    }
    if let Some(d) = b.description {
        meta.description = d;
    }
    store::commit(vec![store::put_json(key, &meta)])
        .await
        .map_err(fault)?;
    Ok(Reply::new(201))
}

/// Deletes the repository with all its tags, manifests, blob links,
/// referrers, grants and shares. Blob files stay until garbage collection.
async fn delete(req: &Incoming, name: &str, who: &Principal) -> Result<Reply, SwrError> {
    authorized(name, who, Action::Delete).await?;
    // What is removed is what was listed: anything added to the
    // repository meanwhile (a trigger, a push) refuses the commit.
    let record = store::get(&keys::repo(name))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("repository {name} not found")))?;
    let mut ops = Vec::new();
    for prefix in [
        keys::tag_prefix(name),
        format!("mtag/{name}:"),
        format!("manifest/{name}:"),
        format!("blob/{name}:"),
        format!("referrer/{name}:"),
        records::repository_grant_prefix(name),
        records::share_prefix(name),
        triggers::repository_prefix(name),
        berth_domain::retention::repository_prefix(name),
        berth_domain::retention::history_prefix(name),
    ] {
        let entries = store::scan_all(&prefix).await.map_err(fault)?;
        if prefix == keys::tag_prefix(name) {
            // A repository with an immutable tag stays.
            let (_, rules) = store::owner_and_rules(name).await.map_err(oci_fault)?;
            let protection = rules.protection();
            for e in &entries {
                let tag = &e.key[prefix.len()..];
                if protection.protecting(name, tag).is_some()
                    && let Some(rule) = rules.protecting(name, tag)
                {
                    return Err(SwrError::forbidden(berth_domain::immutable::refusal(
                        name, tag, rule,
                    )));
                }
            }
        }
        let manifests = format!("manifest/{name}:");
        let links = format!("blob/{name}:");
        for e in &entries {
            // What the repository referenced and linked may be garbage now
            // (`berth_domain::gc`).
            if let Some(digest) = e.key.strip_prefix(&manifests)
                && let Some((record, body)) = keys::decode_manifest(&e.value)
            {
                ops.extend(berth_guest::gc::unindex(
                    name,
                    digest,
                    &record.media_type,
                    body,
                    &[],
                    store::now(),
                ));
            } else if let Some(digest) = e.key.strip_prefix(&links) {
                ops.push(store::delete(berth_domain::gc::holder(digest, name)));
                ops.push(berth_guest::gc::enqueue(
                    &berth_domain::gc::Candidate::blob(digest, store::now()),
                ));
            }
        }
        for e in entries {
            // A trigger's id index goes with it.
            if let Ok(t) = serde_json::from_slice::<triggers::Trigger>(&e.value)
                && e.key.starts_with(triggers::ALL)
            {
                ops.push(store::delete(triggers::id_key(t.id)));
            }
            ops.push(store::delete(e.key));
        }
    }
    let ns = store::get_json::<records::Namespace>(&records::namespace(stats::namespace_of(name)))
        .await
        .map_err(oci_fault)?;
    let tenant = ns.as_ref().map(|ns| ns.tenant.as_str());
    if let Some(tenant) = tenant {
        ops.push(store::delete(records::tenant_repository(tenant, name)));
        // Its sync rules and sync jobs go with it.
        for prefix in [
            berth_domain::replication::rules::sync_rules_of(tenant, name),
            berth_domain::replication::runs::sync_jobs_of(tenant, name),
        ] {
            for e in store::scan_all(&prefix).await.map_err(fault)? {
                ops.push(store::delete(e.key));
            }
        }
    }
    ops.push(store::event(&event(
        req,
        EventKind::RepositoryDeleted,
        tenant,
        name,
        who,
    )));
    ops.push(WriteOp::Delete((
        keys::repo(name),
        Precondition::Version(record.version),
    )));
    ops.push(store::delete(records::repository_meta(name)));
    berth_guest::manage::commit(ops, || {
        format!("repository {name} changed while it was being deleted; try again")
    })
    .await?;
    Ok(Reply::new(204))
}

/// v2: `limit`/`offset` and a `Content-Range` header; v3: `limit`/`marker`
/// and `next_marker`. Filters: `namespace`, `name`, `category`, and in v2
/// `filter=namespace::x|name::y|category::z`.
async fn list(req: &Incoming, who: &Principal, v3: bool) -> Result<Reply, SwrError> {
    let mut namespace = req.query("namespace").map(String::from);
    let mut name = req.query("name").map(String::from);
    let mut category = req.query("category").map(String::from);
    if let Some(f) = req.query("filter") {
        for part in f.split('|') {
            match part.split_once("::") {
                Some(("namespace", v)) => namespace = Some(v.into()),
                Some(("name", v)) => name = Some(v.into()),
                Some(("category", v)) => category = Some(v.into()),
                _ => {}
            }
        }
    }
    let public = req.query("is_public").map(|v| v == "true");
    let number = |k: &str| -> Result<Option<usize>, SwrError> {
        req.query(k)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| SwrError::bad_request(format!("{k} must be a number")))
            })
            .transpose()
    };
    let limit = number("limit")?
        .unwrap_or(if v3 { 100 } else { usize::MAX })
        .min(1000);
    let offset = if v3 {
        number("marker")?.unwrap_or(0)
    } else {
        number("offset")?.unwrap_or(0)
    };
    // The tenant's repositories in name order.
    let names = store::scan_names(&records::tenant_repository_prefix(&who.tenant))
        .await
        .map_err(fault)?;
    // Whom the whole tenant is visible to needs no decision per repository.
    let everything = iam::whole_tenant(who, Action::GetRepository);
    let mut matching = Vec::new();
    for n in names {
        if namespace
            .as_ref()
            .is_some_and(|ns| stats::namespace_of(&n) != ns)
            || name
                .as_ref()
                .is_some_and(|x| !stats::short_name(&n).contains(x.as_str()))
        {
            continue;
        }
        if everything
            || berth_guest::auth::may(Some(who), Action::GetRepository, &n)
                .await
                .map_err(oci_fault)?
        {
            matching.push(n);
        }
    }
    // Attribute filters read the attributes alone, in one batch; full
    // statistics are gathered for the rows of the page only.
    if category.is_some() || public.is_some() {
        let metas = store::metadata::get_many(
            matching
                .iter()
                .map(|n| records::repository_meta(n))
                .collect(),
        )
        .await
        .map_err(fault)?;
        let keep: Vec<bool> = metas
            .iter()
            .map(|e| {
                let m: RepositoryMeta = e
                    .as_ref()
                    .and_then(|e| serde_json::from_slice(&e.value).ok())
                    .unwrap_or_default();
                category.as_ref().is_none_or(|c| &m.category == c)
                    && public.is_none_or(|p| m.public == p)
            })
            .collect();
        let mut flags = keep.into_iter();
        matching.retain(|_| flags.next().unwrap_or(false));
    }
    let total = matching.len();
    let mut rows = Vec::new();
    for n in matching.iter().skip(offset).take(limit) {
        rows.push(RepoStats::load(n).await?.listing(n, v3));
    }
    if v3 {
        let next = offset + rows.len();
        let mut body = serde_json::json!({ "repos": rows });
        if next < total {
            body["nextMarker"] = next.into();
        }
        ok_json(200, &body)
    } else {
        let end = (offset + rows.len()).saturating_sub(1);
        let reply = ok_json(200, &rows)?;
        Ok(reply.header("content-range", format!("{offset}-{end}/{total}")))
    }
}

async fn list_tags(
    req: &Incoming,
    name: &str,
    who: &Principal,
    v3: bool,
) -> Result<Reply, SwrError> {
    authorized(name, who, Action::GetRepository).await?;
    let filter = req.query("tag").map(String::from);
    let limit: usize = req
        .query("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if v3 { 100 } else { usize::MAX })
        .min(1000);
    if v3 {
        // `marker`: the last tag of the previous page. Unfiltered, only the
        // page is read from the store (a console showing a repository of
        // 10,000 tags reads 100).
        let marker = req.query("marker");
        let (page, has_more) = match &filter {
            None => stats::tag_page(name, marker, limit).await?,
            Some(f) => {
                let st = RepoStats::load(name).await?;
                let tags: Vec<stats::TagStats> = st
                    .tags
                    .into_iter()
                    .filter(|t| t.tag.contains(f.as_str()))
                    .filter(|t| marker.is_none_or(|m| t.tag.as_str() > m))
                    .collect();
                let more = tags.len() > limit;
                (tags.into_iter().take(limit).collect(), more)
            }
        };
        // Berth adds when each was last pulled (`last_pulled`, RFC 3339; ""
        // never), from the pull statistics, in one read for the page.
        let pulled = store::metadata::counters(
            page.iter()
                .map(|t| berth_domain::keys::pulled(name, &t.digest))
                .collect(),
        )
        .await
        .map_err(fault)?;
        let listed: Vec<_> = page
            .iter()
            .zip(pulled)
            .map(|(t, at)| {
                let mut v = t.json(name, TagField::Lower);
                v["last_pulled"] = if at > 0 {
                    berth_domain::swr::rfc3339(at as u64).into()
                } else {
                    "".into()
                };
                v
            })
            .collect();
        let mut body = serde_json::json!({
            "tags": listed,
            "has_more": has_more,
        });
        if has_more && let Some(last) = page.last() {
            body["nextMarker"] = last.tag.clone().into();
        }
        ok_json(200, &body)
    } else {
        let st = RepoStats::load(name).await?;
        let tags: Vec<&stats::TagStats> = st
            .tags
            .iter()
            .filter(|t| filter.as_ref().is_none_or(|f| t.tag.contains(f.as_str())))
            .collect();
        let offset: usize = req
            .query("offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let page: Vec<_> = tags.iter().skip(offset).take(limit).collect();
        let end = (offset + page.len()).saturating_sub(1);
        let rows: Vec<serde_json::Value> =
            page.iter().map(|t| t.json(name, TagField::Upper)).collect();
        let reply = ok_json(200, &rows)?;
        Ok(reply.header("content-range", format!("{offset}-{end}/{}", tags.len())))
    }
}

async fn show_tag(name: &str, tag: &str, who: &Principal) -> Result<Reply, SwrError> {
    authorized(name, who, Action::GetRepository).await?;
    let st = RepoStats::load(name).await?;
    let t = st
        .tags
        .iter()
        .find(|t| t.tag == tag)
        .ok_or_else(|| SwrError::not_found(format!("tag {tag} not found in {name}")))?;
    ok_json(200, &t.json(name, TagField::Lower))
}

#[derive(Deserialize)]
struct CreateTagBody {
    source_tag: String,
    destination_tag: String,
    #[serde(default)]
    r#override: bool,
}

/// The event of a change by `who` to repository `name`, owned by `tenant`.
/// The event of a change by `who` to repository `name`, owned by `tenant`.
fn event(
    req: &Incoming,
    kind: EventKind,
    tenant: Option<&str>,
    name: &str,
    who: &Principal,
) -> EventRecord {
    let operator = format!("{}@{}", who.user, who.tenant);
    store::new_event(req, kind, tenant.unwrap_or_default(), name, operator)
}

async fn create_tag(
    req: &Incoming,
    name: &str,
    body: &[u8],
    who: &Principal,
) -> Result<Reply, SwrError> {
    let facts = authorized(name, who, Action::Push).await?;
    let b: CreateTagBody = parse_body(body)?;
    if !berth_domain::name::is_valid_tag(&b.destination_tag) {
        return Err(SwrError::invalid_name(format!(
            "invalid tag {:?}",
            b.destination_tag
        )));
    }
    let source = store::get(&keys::tag(name, &b.source_tag))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("tag {} not found", b.source_tag)))?;
    let digest = String::from_utf8_lossy(&source.value).to_string();
    let key = keys::tag(name, &b.destination_tag);
    let current = store::get(&key).await.map_err(oci_fault)?;
    let mut ops = Vec::new();
    let pre = match &current {
        Some(_) if !b.r#override => {
            return Err(SwrError::conflict(format!(
                "tag {} already exists",
                b.destination_tag
            )));
        }
        Some(e) => {
            let old = String::from_utf8_lossy(&e.value).to_string();
            if old != digest {
                immutable_check(name, &b.destination_tag).await?;
                ops.extend(berth_guest::gc::untag(name, &old, &b.destination_tag));
            }
            Precondition::Version(e.version)
        }
        None => Precondition::Absent,
    };
    ops.push(WriteOp::Put((key, digest.clone().into_bytes(), pre)));
    ops.push(store::put_json(
        keys::manifest_tag(name, &digest, &b.destination_tag),
        &keys::TagInfo {
            updated: store::now(),
        },
    ));
    // A new tag on a stored manifest: a push by tag, as a client's would be.
    let manifest = store::get(&keys::manifest(name, &digest))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("tag {} not found", b.source_tag)))?;
    // The manifest must still be there when the tag is (garbage collection
    // may be deleting it, untagged).
    ops.push(berth_guest::gc::check(
        keys::manifest(name, &digest),
        Precondition::Version(manifest.version),
    ));
    ops.push(berth_guest::gc::check(
        berth_domain::gc::doomed(&digest),
        Precondition::Absent,
    ));
    let manifest = Some(manifest);
    let decoded = manifest
        .as_ref()
        .and_then(|e| keys::decode_manifest(&e.value));
    let pushed = event(
        req,
        EventKind::ManifestPushed,
        facts.owner.as_deref(),
        name,
        who,
    )
    .about(
        Some(&b.destination_tag),
        &digest,
        decoded
            .as_ref()
            .map(|(r, body)| (r.media_type.as_str(), body.len())),
    );
    ops.push(store::event(&pushed));
    match store::commit(ops).await {
        Ok(_) => Ok(Reply::new(201)),
        Err(store::StoreError::Conflict) => Err(SwrError::conflict(format!(
            "tag {} changed meanwhile; try again",
            b.destination_tag
        ))),
        Err(e) => Err(fault(e)),
    }
}

/// Refuses (403) a change to `tag` of `name` that an immutable-tag rule
/// protects (`berth_domain::immutable`).
async fn immutable_check(name: &str, tag: &str) -> Result<(), SwrError> {
    let (_, rules) = store::owner_and_rules(name).await.map_err(oci_fault)?;
    match rules.protecting(name, tag) {
        Some(rule) => Err(SwrError::forbidden(berth_domain::immutable::refusal(
            name, tag, rule,
        ))),
        None => Ok(()),
    }
}

async fn delete_tag(
    req: &Incoming,
    name: &str,
    tag: &str,
    who: &Principal,
) -> Result<Reply, SwrError> {
    let facts = authorized(name, who, Action::Delete).await?;
    let entry = store::get(&keys::tag(name, tag))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("tag {tag} not found in {name}")))?;
    immutable_check(name, tag).await?;
    let digest = String::from_utf8_lossy(&entry.value).to_string();
    let deleted = event(
        req,
        EventKind::TagDeleted,
        facts.owner.as_deref(),
        name,
        who,
    )
    .about(Some(tag), &digest, None);
    let mut ops = vec![
        WriteOp::Delete((keys::tag(name, tag), Precondition::Version(entry.version))),
        store::event(&deleted),
    ];
    ops.extend(berth_guest::gc::untag(name, &digest, tag));
    store::commit(ops).await.map_err(fault)?;
    Ok(Reply::new(204))
}

async fn access(name: &str, m: &Method, body: &[u8], who: &Principal) -> Result<Reply, SwrError> {
    match m {
        Method::Get => {
            let facts = authorized_owner(name, who, Action::GetRepository).await?;
            let level =
                iam::effective_level(Some(who), &iam::action::repository_resource(name), &facts);
            let others = grants::others(who, &records::repository_grant_prefix(name)).await?;
            ok_json(
                200,
                &serde_json::json!({
                    "id": swr::numeric_id(name),
                    "name": stats::short_name(name),
                    "self_auth": grants::UserAuth::of(who, level),
                    "others_auths": others,
                }),
            )
        }
        Method::Post | Method::Patch => {
            authorized(name, who, Action::Grant).await?;
            grants::write(who, body, matches!(m, Method::Patch), |id| {
                records::repository_grant(name, id)
            })
            .await?;
            Ok(Reply::new(201))
        }
        Method::Delete => {
            authorized(name, who, Action::Grant).await?;
            grants::delete(body, |id| records::repository_grant(name, id)).await?;
            Ok(Reply::new(204))
        }
        _ => Err(SwrError::method_not_allowed()),
    }
}
