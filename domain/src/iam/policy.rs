//! IAM-style JSON policies: statements that allow or deny actions on
//! resources, with `*` wildcards; an explicit deny always wins.
//!
//! ```json
//! {"Version": "1.1", "Statement": [
//!   {"Effect": "Allow", "Action": ["swr:repository:*"], "Resource": ["swr:*:*:repository:team-a/*"]},
//!   {"Effect": "Deny",  "Action": ["swr:repository:delete"]}
//! ]}
//! ```

use super::action::Action;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One or several strings: IAM documents accept both forms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s).iter().map(String::as_str),
            OneOrMany::Many(v) => v.iter().map(String::as_str),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Action")]
    pub action: OneOrMany,
    /// Absent: every resource.
    #[serde(rename = "Resource", default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<OneOrMany>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version", default = "version")]
    pub version: String,
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

fn version() -> String {
    "1.1".into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy is not valid JSON: {0}")]
    Json(String),
    #[error("policy has no statements")]
    Empty,
    #[error("action {0:?} is not of the form service:resource:operation")]
    Action(String),
}

impl PolicyDocument {
    pub fn parse(json: &str) -> Result<PolicyDocument, PolicyError> {
        let doc: PolicyDocument =
            serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        if doc.statement.is_empty() {
            return Err(PolicyError::Empty);
        }
        for s in &doc.statement {
            for a in s.action.iter() {
                if a != "*" && a.split(':').count() != 3 {
                    return Err(PolicyError::Action(a.to_string()));
                }
            }
        }
        Ok(doc)
    }

    /// The effect this document has on `action` over `resource`, if any
    /// statement matches: `Deny` if any matching statement denies.
    pub fn effect(&self, action: Action, resource: &str) -> Option<Effect> {
        let mut out = None;
        for s in &self.statement {
            let acts = s.action.iter().any(|p| glob(p, action.name()));
            let res = s
                .resource
                .as_ref()
                .is_none_or(|r| r.iter().any(|p| glob(p, resource)));
            if acts && res {
                if s.effect == Effect::Deny {
                    return Some(Effect::Deny);
                }
                out = Some(Effect::Allow);
            }
        }
        out
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters
/// (including none) and every other character matches itself,
/// case-insensitively (IAM action names are case-insensitive).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (
        pattern.to_lowercase().chars().collect(),
        text.to_lowercase().chars().collect(),
    );
    // Iterative matcher with one backtrack point: linear for one `*`,
    // O(n·m) worst case, never exponential.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("swr:*:*", "swr:repository:pull"));
        assert!(glob("swr:repository:*", "swr:repository:push"));
        assert!(!glob("swr:namespace:*", "swr:repository:push"));
        assert!(glob("*", "anything"));
        assert!(glob(
            "swr:*:*:repository:team-a/*",
            "swr:*:*:repository:team-a/app"
        ));
        assert!(!glob(
            "swr:*:*:repository:team-a/*",
            "swr:*:*:repository:team-b/app"
        ));
        assert!(glob("SWR:Repository:Pull", "swr:repository:pull"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXbYY"));
    }

    #[test]
    fn deny_wins_and_resources_scope() {
        let doc = PolicyDocument::parse(
            r#"{"Version":"1.1","Statement":[
                {"Effect":"Allow","Action":["swr:repository:*"],"Resource":["swr:*:*:repository:team-a/*"]},
                {"Effect":"Deny","Action":"swr:repository:delete"}]}"#,
        )
        .unwrap();
        let a = "swr:*:*:repository:team-a/app";
        assert_eq!(doc.effect(Action::Push, a), Some(Effect::Allow));
        assert_eq!(doc.effect(Action::Delete, a), Some(Effect::Deny));
        assert_eq!(
            doc.effect(Action::Push, "swr:*:*:repository:team-b/app"),
            None
        );
        assert_eq!(doc.effect(Action::CreateNamespace, a), None);
    }

    #[test]
    fn invalid_documents() {
        assert!(matches!(
            PolicyDocument::parse("{"),
            Err(PolicyError::Json(_))
        ));
        assert_eq!(
            PolicyDocument::parse(r#"{"Statement":[]}"#),
            Err(PolicyError::Empty)
        );
        assert!(matches!(
            PolicyDocument::parse(r#"{"Statement":[{"Effect":"Allow","Action":"push"}]}"#),
            Err(PolicyError::Action(_))
        ));
        assert!(matches!(
            PolicyDocument::parse(r#"{"Statement":[{"Effect":"Maybe","Action":"*"}]}"#),
            Err(PolicyError::Json(_))
        ));
    }
}
