//! Doublestar selectors (`RuleSelector` in SWR's enterprise API, Harbor's
//! rule selectors): which repositories and tags a webhook policy, an
//! immutable-tag rule or a retention policy applies to.

use serde::{Deserialize, Serialize};

/// `RuleSelector`: a doublestar glob (`*` within a path segment, `**`
/// across them, `?`, `{a,b}`) that includes (`repoMatches`, `matches`) or
/// excludes (`repoExcludes`, `excludes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSelector {
    pub kind: String,
    pub decoration: String,
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<String>,
}

/// Checks a selector: `doublestar`, a known decoration, a pattern of 1–512
/// characters that compiles; the error names what is wrong.
pub fn check(s: &RuleSelector) -> Result<(), String> {
    if s.kind != "doublestar" {
        return Err(format!("selector kind {:?}: only doublestar", s.kind));
    }
    if !matches!(
        s.decoration.as_str(),
        "repoMatches" | "repoExcludes" | "matches" | "excludes"
    ) {
        return Err(format!(
            "selector decoration {:?}: repoMatches, repoExcludes, matches or excludes",
            s.decoration
        ));
    }
    if s.pattern.is_empty() || s.pattern.len() > 512 {
        return Err("selector pattern: 1 to 512 characters".into());
    }
    if s.extras.as_ref().is_some_and(|e| e.len() > 256) {
        return Err("selector extras: at most 256 characters".into());
    }
    glob(&s.pattern).map(|_| ())
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("selector pattern {pattern:?}: {e}"))
}

/// Whether `candidate` (a repository name within its organization, or a
/// tag) is selected: the pattern matches it and the decoration includes,
/// or it does not and the decoration excludes.
pub fn selected(s: &RuleSelector, candidate: &str) -> bool {
    let hit = glob(&s.pattern).is_ok_and(|g| g.is_match(candidate));
    if s.decoration.ends_with("xcludes") {
        !hit
    } else {
        hit
    }
}

/// Checks the selectors of a rule as SWR's enterprise models take them
/// (immutable-tag rules, retention rules): exactly one tag selector
/// (`matches` or `excludes`), and under the only key `repository` exactly
/// one repository selector (`repoMatches` or `repoExcludes`).
pub fn check_rule(
    tag_selectors: &[RuleSelector],
    scope_selectors: &std::collections::BTreeMap<String, Vec<RuleSelector>>,
) -> Result<(), String> {
    let [tag] = tag_selectors else {
        return Err("tag_selectors: exactly one selector".into());
    };
    check(tag)?;
    if !matches!(tag.decoration.as_str(), "matches" | "excludes") {
        return Err("tag_selectors: decoration matches or excludes".into());
    }
    let repos = match scope_selectors.get("repository") {
        Some(r) if scope_selectors.len() == 1 => r,
        _ => return Err("scope_selectors: only the key repository".into()),
    };
    let [repo] = repos.as_slice() else {
        return Err("scope_selectors.repository: exactly one selector".into());
    };
    check(repo)?;
    if !matches!(repo.decoration.as_str(), "repoMatches" | "repoExcludes") {
        return Err("scope_selectors.repository: decoration repoMatches or repoExcludes".into());
    }
    Ok(())
}

/// A selector compiled once, for many candidates.
pub struct Compiled {
    matcher: globset::GlobMatcher,
    exclude: bool,
}

/// `s` compiled (`None` if its pattern does not compile: stored
/// selectors were checked when written).
pub fn compile(s: &RuleSelector) -> Option<Compiled> {
    Some(Compiled {
        matcher: glob(&s.pattern).ok()?,
        exclude: s.decoration.ends_with("xcludes"),
    })
}

impl Compiled {
    /// [`selected`], without compiling again.
    pub fn selects(&self, candidate: &str) -> bool {
        self.matcher.is_match(candidate) != self.exclude
    }
}
