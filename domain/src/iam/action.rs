//! What can be done in Berth, as IAM action names, and which organization
//! or repository permission (SWR's read / edit / manage) covers each.

use serde::{Deserialize, Serialize};

/// Every operation that is authorized. The names follow IAM's
/// `service:resource:operation` form, so policies can use wildcards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Download an image (GET/HEAD on `/v2/`).
    Pull,
    /// Upload an image or tag (blob uploads, manifest PUT, tag creation).
    Push,
    /// Delete an image, a version (tag) or a repository.
    Delete,
    /// Read repository metadata (details, tags, grants) through the API.
    GetRepository,
    /// Edit repository attributes (public/private, category, description).
    UpdateRepository,
    /// Share a private repository with other tenants.
    Share,
    /// Add, change or remove permissions on a repository or organization.
    Grant,
    /// Add, change or remove triggers.
    Trigger,
    /// Sync images to other registries.
    Sync,
    /// Aging rules.
    Retention,
    CreateNamespace,
    DeleteNamespace,
    /// Read an organization (details, permissions).
    GetNamespace,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::GetRepository,
        Action::UpdateRepository,
        Action::Share,
        Action::Grant,
        Action::Trigger,
        Action::Sync,
        Action::Retention,
        Action::CreateNamespace,
        Action::DeleteNamespace,
        Action::GetNamespace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Pull => "swr:repository:pull",
            Action::Push => "swr:repository:push",
            Action::Delete => "swr:repository:delete",
            Action::GetRepository => "swr:repository:get",
            Action::UpdateRepository => "swr:repository:update",
            Action::Share => "swr:repository:share",
            Action::Grant => "swr:repository:grant",
            Action::Trigger => "swr:repository:trigger",
            Action::Sync => "swr:repository:sync",
            Action::Retention => "swr:repository:retention",
            Action::CreateNamespace => "swr:namespace:create",
            Action::DeleteNamespace => "swr:namespace:delete",
            Action::GetNamespace => "swr:namespace:get",
        }
    }

    /// Reading actions: all that ReadOnlyAccess, a read grant, a public
    /// repository or a share give.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Action::Pull | Action::GetRepository | Action::GetNamespace
        )
    }

    /// The permission level a grant must have to cover this action; `None`
    /// for actions no grant gives (creating an organization).
    pub fn level(self) -> Option<Level> {
        match self {
            Action::Pull | Action::GetRepository | Action::GetNamespace => Some(Level::Read),
            Action::Push | Action::UpdateRepository => Some(Level::Edit),
            Action::Delete
            | Action::Share
            | Action::Grant
            | Action::Trigger
            | Action::Sync
            | Action::Retention
            | Action::DeleteNamespace => Some(Level::Manage),
            Action::CreateNamespace => None,
        }
    }
}

/// SWR's permission on an organization or a repository; the API encodes
/// them as 1, 3 and 7 (bits read, write, manage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum Level {
    Read = 1,
    Edit = 3,
    Manage = 7,
}

impl Level {
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn covers(self, action: Action) -> bool {
        action.level().is_some_and(|need| need <= self)
    }
}

impl From<Level> for u8 {
    fn from(l: Level) -> u8 {
        l as u8
    }
}

impl TryFrom<u8> for Level {
    type Error = String;
    fn try_from(v: u8) -> Result<Level, String> {
        match v {
            1 => Ok(Level::Read),
            3 => Ok(Level::Edit),
            7 => Ok(Level::Manage),
            _ => Err(format!(
                "permission {v} is not 1 (read), 3 (edit) or 7 (manage)"
            )),
        }
    }
}

/// Resource names used in policies.
pub fn namespace_resource(namespace: &str) -> String {
    format!("swr:*:*:namespace:{namespace}")
}
pub fn repository_resource(repository: &str) -> String {
    format!("swr:*:*:repository:{repository}")
}
