//! `spin:variables/variables@3.0.0`: a component's variables, as its
//! `[component.<id>.variables]` in `spin.toml` render them (application
//! variables and `--var` overrides applied). Names follow Spin's rule:
//! lowercase ASCII letters, digits and `_`, starting with a letter.

use super::Spin;
use super::spin::variables::variables::{Error, HostWithStore};
use wasmtime::component::Accessor;

/// Whether `name` is a name Spin allows for a variable.
fn valid(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl super::spin::variables::variables::Host for super::SpinView<'_> {}

impl<T: Send> HostWithStore<T> for Spin {
    async fn get(a: &Accessor<T, Self>, name: String) -> Result<String, Error> {
        if !valid(&name) {
            return Err(Error::InvalidName(name));
        }
        a.with(|mut v| v.get().state.variables.get(&name).cloned())
            .ok_or(Error::Undefined(name))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_as_spin_allows_them() {
        assert!(super::valid("s3_bucket") && super::valid("a1"));
        for bad in ["", "S3", "1a", "a-b", "a.b", "_a"] {
            assert!(!super::valid(bad), "{bad}");
        }
    }
}
