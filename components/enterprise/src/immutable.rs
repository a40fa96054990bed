//! Immutable-tag rules of an organization (SWR enterprise edition:
//! `create_immutable_rule`, `list_immutable_rules`,
//! `update_immutable_rule`, `delete_immutable_rule`);
//! `berth_domain::immutable` holds the rules and what they protect, the
//! manifests and repositories components refuse the changes. Rules need
//! `swr:repository:retention` (image lifecycle policies) on the
//! organization.

use crate::Call;
use crate::webhooks::{namespace_id_param, page};
use berth_domain::iam::Action;
use berth_domain::immutable::{self as im, Rule, RuleBody, Rules};
use berth_domain::swr::SwrError;
use berth_guest::http::Reply;
use berth_guest::manage::{commit, fault, oci_fault, ok_json, organization_allowed, parse_body};
use berth_guest::store::{self, Precondition, WriteOp, metadata};

/// The counter rule ids come from.
const IDS: &str = "count/immutable-rule-id";

async fn organization(call: &Call<'_>, ns: &str) -> Result<u64, SwrError> {
    organization_allowed(&call.who, ns, Action::Retention).await
}

/// The organization's rules and the version they were read at (0: none
/// yet), and its record (the rules are written only while it exists).
async fn load(call: &Call<'_>, ns: &str) -> Result<(Rules, u64, metadata::Entry), SwrError> {
    let namespace_id = organization(call, ns).await?;
    let org = store::get(&berth_domain::iam::records::namespace(ns))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::not_found(format!("namespace {ns} not found")))?;
    let entry = store::get(&im::key(ns)).await.map_err(oci_fault)?;
    let fresh = Rules {
        tenant: call.who.tenant.clone(),
        namespace: ns.to_string(),
        namespace_id,
        rules: Vec::new(),
    };
    Ok(match entry {
        Some(e) => {
            let rules: Rules = serde_json::from_slice(&e.value)
                .map_err(|e| SwrError::internal(format!("corrupt immutable rules: {e}")))?;
            // Left by an earlier owner of the name: replaced, not extended.
            if rules.tenant == fresh.tenant && rules.namespace_id == namespace_id {
                (rules, e.version, org)
            } else {
                (fresh, e.version, org)
            }
        }
        None => (fresh, 0, org),
    })
}

/// Writes `rules` over what was read at `version`, while organization
/// record `org` is as read (a delete meanwhile refuses it: no rules
/// outlive their organization).
async fn save(ns: &str, rules: &Rules, version: u64, org: metadata::Entry) -> Result<(), SwrError> {
    let precondition = match version {
        0 => Precondition::Absent,
        v => Precondition::Version(v),
    };
    let value = serde_json::to_vec(rules).expect("rules serialize");
    let ops = vec![
        WriteOp::Put((im::key(ns), value, precondition)),
        WriteOp::Put((org.key, org.value, Precondition::Version(org.version))),
    ];
    commit(ops, || {
        format!(
            "the immutable tag rules of {ns}, or the organization, changed meanwhile; try again"
        )
    })
    .await
}

pub async fn create(call: &Call<'_>, ns: &str) -> Result<Reply, SwrError> {
    let (mut rules, version, org) = load(call, ns).await?;
    let body: RuleBody = parse_body(&call.body)?;
    im::validate(&body).map_err(SwrError::bad_request)?;
    if rules.rules.len() >= im::MAX_RULES {
        return Err(SwrError::quota(format!(
            "an organization has at most {} immutable tag rules",
            im::MAX_RULES
        )));
    }
    let id = metadata::increment(IDS.to_string(), 1)
        .await
        .map_err(fault)? as u64;
    let now = store::now();
    rules.rules.push(Rule {
        id,
        priority: body.priority.unwrap_or(0),
        disabled: body.disabled.unwrap_or(false),
        tag_selectors: body.tag_selectors,
        scope_selectors: body.scope_selectors,
        creator: call.who.user.clone(),
        created: now,
        updated: now,
    });
    save(ns, &rules, version, org).await?;
    ok_json(201, &serde_json::json!({ "id": id }))
}

/// The SDK's `ImmutableRule`.
fn view(rules: &Rules, r: &Rule) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "namespace_id": rules.namespace_id,
        "namespace_name": rules.namespace,
        "priority": r.priority,
        "disabled": r.disabled,
        "action": "immutable",
        "template": "immutable_template",
        "tag_selectors": r.tag_selectors,
        "scope_selectors": r.scope_selectors,
    })
}

/// Every rule of the caller's organizations it may manage rules of
/// (`namespace_id` filters), in id order, paged.
pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    let (offset, limit) = page(call)?;
    let namespace_id = namespace_id_param(call)?;
    let mut out = Vec::new();
    for e in store::scan_all(im::ALL).await.map_err(fault)? {
        let Ok(rules) = serde_json::from_slice::<Rules>(&e.value) else {
            continue;
        };
        if rules.tenant != call.who.tenant
            || namespace_id.is_some_and(|n| n != rules.namespace_id)
            || organization(call, &rules.namespace).await.is_err()
        {
            continue;
        }
        out.extend(rules.rules.iter().map(|r| (r.id, view(&rules, r))));
    }
    out.sort_by_key(|(id, _)| *id);
    let total = out.len();
    let page: Vec<_> = out
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, v)| v)
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "immutable_rules": page, "total": total }),
    )
}

fn position(rules: &Rules, ns: &str, id: u64) -> Result<usize, SwrError> {
    rules
        .rules
        .iter()
        .position(|r| r.id == id)
        .ok_or_else(|| SwrError::not_found(format!("immutable tag rule {id} not found in {ns}")))
}

pub async fn update(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (mut rules, version, org) = load(call, ns).await?;
    let i = position(&rules, ns, id)?;
    let body: RuleBody = parse_body(&call.body)?;
    im::validate(&body).map_err(SwrError::bad_request)?;
    let rule = &mut rules.rules[i];
    rule.priority = body.priority.unwrap_or(rule.priority);
    rule.disabled = body.disabled.unwrap_or(rule.disabled);
    rule.tag_selectors = body.tag_selectors;
    rule.scope_selectors = body.scope_selectors;
    rule.updated = store::now();
    save(ns, &rules, version, org).await?;
    Ok(Reply::new(200))
}

pub async fn delete(call: &Call<'_>, ns: &str, id: u64) -> Result<Reply, SwrError> {
    let (mut rules, version, org) = load(call, ns).await?;
    let i = position(&rules, ns, id)?;
    rules.rules.remove(i);
    save(ns, &rules, version, org).await?;
    Ok(Reply::new(204))
}
