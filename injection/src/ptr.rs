//! JSON pointers (RFC 6901) into one object, built segment by segment, so a map key holding
//! `/` or `~` (a DGD service name) is escaped and never splits a path.

use std::fmt;

use serde_json::Value;

use crate::layout::STALE;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
    /// `-`: past the end of a list (append).
    End,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ptr(pub Vec<Seg>);

impl Ptr {
    /// A pointer from `/`-free keys, e.g. `Ptr::keys(&["spec", "template", "spec"])`.
    pub fn keys(keys: &[&str]) -> Ptr {
        Ptr(keys.iter().map(|k| Seg::Key(k.to_string())).collect())
    }

    pub fn key(&self, k: &str) -> Ptr {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Ptr {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    pub fn end(&self) -> Ptr {
        let mut p = self.clone();
        p.0.push(Seg::End);
        p
    }

    pub fn parent(&self) -> Ptr {
        Ptr(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }

    pub fn prefix(&self, len: usize) -> Ptr {
        Ptr(self.0[..len].to_vec())
    }

    /// The value here; `None` when absent (a JSON null counts as absent: kustomize and the API
    /// server treat both the same).
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for seg in &self.0 {
            cur = match seg {
                Seg::Key(k) => cur.as_object()?.get(k)?,
                Seg::Index(i) => cur.as_array()?.get(*i)?,
                Seg::End => return None,
            };
        }
        (!cur.is_null()).then_some(cur)
    }

    pub fn get_mut<'a>(&self, v: &'a mut Value) -> Option<&'a mut Value> {
        let mut cur = v;
        for seg in &self.0 {
            cur = match seg {
                Seg::Key(k) => cur.as_object_mut()?.get_mut(k)?,
                Seg::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
                Seg::End => return None,
            };
        }
        Some(cur)
    }

    /// The same place inside the scratch copy of `/spec` that a patch's pins test against
    /// (`/spec/x` → `/<STALE>/x`), so a failing pin names the way out.
    pub fn scratch(&self) -> Ptr {
        match self.0.first() {
            Some(Seg::Key(k)) if k == "spec" => {
                let mut p = self.clone();
                p.0[0] = Seg::Key(STALE.to_string());
                p
            }
            _ => panic!("{self} is not under /spec"),
        }
    }
}

impl fmt::Display for Ptr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
                Seg::Index(i) => write!(f, "/{i}")?,
                Seg::End => f.write_str("/-")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_escaped_and_null_is_absent() {
        let p = Ptr::keys(&["spec", "services"]).key("a/b~c").index(0).end();
        assert_eq!(p.to_string(), "/spec/services/a~1b~0c/0/-");
        let v = json!({"spec": {"x": null, "y": [1]}});
        assert_eq!(Ptr::keys(&["spec", "x"]).get(&v), None);
        assert_eq!(Ptr::keys(&["spec", "y"]).index(0).get(&v), Some(&json!(1)));
        assert_eq!(Ptr::keys(&["spec", "y"]).scratch().to_string(), format!("/{STALE}/y"));
    }
}
