//! Ownership map: who answers for an endpoint — team, contact and tier — by host and
//! path-prefix globs (`--owners FILE`, TOML, YAML or JSON).
//!
//! Owns the owners file format and the lookup. An entry matches an endpoint when one of its
//! host globs matches the host and (if it lists paths) one of its path globs covers the
//! template as a prefix at a segment boundary (`/api/v1/orders` covers
//! `/api/v1/orders/{id}`; globs as in [`crate::policy`]). The most specific match wins: an
//! entry with a matching path beats a host-only entry, then the longer literal path, then the
//! longer literal host, then the earlier entry in the file. So a catch-all
//! `hosts = ["**"]` entry can sit at the top as a default without shadowing anything.
//!
//! ```toml
//! [[owners]]
//! team = "payments"
//! contact = "payments-oncall@example.com"
//! tier = "tier-1"
//! hosts = ["legacy.example.test"]
//! paths = ["/api/v1/orders", "/api/v1/invoices"]
//! ```
use crate::policy::{read_document, DocError, Glob, Issue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// Entries per ownership map (each lookup walks them all; owner lookups are cached per
/// endpoint by the findings engine).
pub const MAX_OWNERS: usize = 10_000;

/// Who owns an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Team name.
    pub team: String,
    /// How to reach them (e-mail, chat channel, URL, on-call alias).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Criticality tier as the organisation names it (`tier-1`, `critical` …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

#[derive(Clone, Debug)]
struct Entry {
    owner: Owner,
    hosts: Vec<Glob>,
    paths: Vec<Glob>,
}

/// An ownership map. [`Owners::default`] is empty: nothing is owned, and the
/// `unowned_endpoint` rule stays quiet (it needs a map to speak of).
#[derive(Clone, Debug, Default)]
pub struct Owners {
    entries: Vec<Entry>,
}

/// Why an owners file was refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    /// Unreadable or not TOML/YAML/JSON.
    #[error(transparent)]
    Document(#[from] DocError),
    /// Problems at key paths.
    #[error("{}", crate::policy::render_issues(.0))]
    Invalid(Vec<Issue>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnersFile {
    #[serde(default)]
    owners: Vec<EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    team: String,
    contact: Option<String>,
    tier: Option<String>,
    hosts: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

impl Owners {
    /// Loads an owners file.
    pub fn load(path: &Path) -> Result<Owners, OwnersError> {
        Owners::from_value(read_document(path)?)
    }

    /// Validates a parsed owners document.
    pub fn from_value(v: Value) -> Result<Owners, OwnersError> {
        let file: OwnersFile = serde_path_to_error::deserialize(v).map_err(|e| {
            OwnersError::Invalid(vec![Issue {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            }])
        })?;
        let mut issues = Vec::new();
        if file.owners.len() > MAX_OWNERS {
            issues.push(Issue {
                key: "owners".into(),
                message: format!("at most {MAX_OWNERS} entries"),
            });
        }
        let mut entries = Vec::new();
        for (i, e) in file.owners.into_iter().take(MAX_OWNERS).enumerate() {
            if e.team.trim().is_empty() {
                issues.push(Issue {
                    key: format!("owners[{i}].team"),
                    message: "empty team name".into(),
                });
            }
            if e.hosts.is_empty() {
                issues.push(Issue {
                    key: format!("owners[{i}].hosts"),
                    message: "list at least one host glob (`**` for any host)".into(),
                });
            }
            let mut hosts = Vec::new();
            for (j, h) in e.hosts.iter().enumerate() {
                match Glob::host(h) {
                    Ok(g) => hosts.push(g),
                    Err(err) => issues.push(Issue {
                        key: format!("owners[{i}].hosts[{j}]"),
                        message: err.to_string(),
                    }),
                }
            }
            let mut paths = Vec::new();
            for (j, p) in e.paths.iter().enumerate() {
                if !p.starts_with('/') {
                    issues.push(Issue {
                        key: format!("owners[{i}].paths[{j}]"),
                        message: format!("{p:?}: path globs start with `/`"),
                    });
                    continue;
                }
                match Glob::path(p) {
                    Ok(g) => paths.push(g),
                    Err(err) => issues.push(Issue {
                        key: format!("owners[{i}].paths[{j}]"),
                        message: err.to_string(),
                    }),
                }
            }
            entries.push(Entry {
                owner: Owner {
                    team: e.team,
                    contact: e.contact.filter(|c| !c.is_empty()),
                    tier: e.tier.filter(|t| !t.is_empty()),
                },
                hosts,
                paths,
            });
        }
        if issues.is_empty() {
            Ok(Owners { entries })
        } else {
            Err(OwnersError::Invalid(issues))
        }
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of the entry owning (`host`, `template`), see the module doc for precedence.
    pub fn lookup_index(&self, host: &str, template: &str) -> Option<usize> {
        let mut best: Option<((bool, usize, usize), usize)> = None;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(host_spec) = e
                .hosts
                .iter()
                .filter(|g| g.matches(host))
                .map(Glob::specificity)
                .max()
            else {
                continue;
            };
            let rank = if e.paths.is_empty() {
                (false, 0, host_spec)
            } else {
                let Some(path_spec) = e
                    .paths
                    .iter()
                    .filter(|g| g.matches_prefix(template))
                    .map(Glob::specificity)
                    .max()
                else {
                    continue;
                };
                (true, path_spec, host_spec)
            };
            // Strictly greater: the earlier entry wins ties.
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The owner of (`host`, `template`).
    pub fn lookup(&self, host: &str, template: &str) -> Option<&Owner> {
        self.lookup_index(host, template).and_then(|i| self.get(i))
    }

    /// The owner at `index` (from [`Owners::lookup_index`]).
    pub fn get(&self, index: usize) -> Option<&Owner> {
        self.entries.get(index).map(|e| &e.owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{parse_document, Syntax};

    fn owners(toml: &str) -> Result<Owners, Vec<Issue>> {
        let v = parse_document(toml, Syntax::Toml).unwrap();
        Owners::from_value(v).map_err(|e| match e {
            OwnersError::Invalid(v) => v,
            OwnersError::Document(d) => panic!("{d}"),
        })
    }

    #[test]
    fn most_specific_entry_wins() {
        let o = owners(
            r#"
            [[owners]]
            team = "platform"
            hosts = ["**"]
            [[owners]]
            team = "legacy"
            contact = "legacy@example.com"
            tier = "tier-2"
            hosts = ["legacy.example.test"]
            [[owners]]
            team = "billing"
            hosts = ["*.example.test"]
            paths = ["/api/v1/orders", "/api/v1/invoices"]
            [[owners]]
            team = "billing-exports"
            hosts = ["legacy.example.test"]
            paths = ["/api/v1/orders/export"]
            "#,
        )
        .unwrap();
        let team = |h: &str, t: &str| o.lookup(h, t).map(|o| o.team.as_str());
        assert_eq!(team("other.example.org", "/x"), Some("platform"));
        assert_eq!(team("legacy.example.test", "/health"), Some("legacy"));
        assert_eq!(
            team("legacy.example.test", "/api/v1/orders"),
            Some("billing")
        );
        assert_eq!(
            team("legacy.example.test", "/api/v1/orders/{id}"),
            Some("billing")
        );
        assert_eq!(
            team("legacy.example.test", "/api/v1/orders/export"),
            Some("billing-exports")
        );
        assert_eq!(
            team("legacy.example.test", "/api/v1/ordersx"),
            Some("legacy")
        );
        let l = o.lookup("legacy.example.test", "/health").unwrap();
        assert_eq!(l.contact.as_deref(), Some("legacy@example.com"));
        assert_eq!(l.tier.as_deref(), Some("tier-2"));
    }

    #[test]
    fn no_match_is_unowned() {
        let o = owners("[[owners]]\nteam = \"a\"\nhosts = [\"a.example\"]\n").unwrap();
        assert!(o.lookup("b.example", "/").is_none());
        assert!(o.lookup("a.example", "/").is_some());
        assert!(Owners::default().lookup("a.example", "/").is_none());
    }

    #[test]
    fn bad_owner_files_name_key_paths() {
        let e = owners("[[owners]]\nteam = \"\"\nhosts = []\npaths = [\"api\"]\n").unwrap_err();
        let keys: Vec<&str> = e.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["owners[0].team", "owners[0].hosts", "owners[0].paths[0]"]
        );
        let e = owners("[[owners]]\nteam = \"a\"\nhost = [\"x\"]\n").unwrap_err();
        assert_eq!(e[0].key, "owners[0].host");
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
    }
}
