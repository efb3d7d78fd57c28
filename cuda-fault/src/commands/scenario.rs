//! `cuda-fault scenario`: a scenario checked by the toggle grammar, printed as its toggle line or,
//! with `--json`, as the line, its keys and the shim's environment variables that make the same
//! scenario. The Python package asks this before it writes a toggle file or starts a child, so
//! the grammar has no second copy there.

use std::io::Write;

use clap::Args;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::flags::EnableFlags;
use crate::exit::{self, Failure};
use crate::layout::{ENV_ENABLED, ENV_PRELOAD, ENV_XID};
use crate::toggle::{Key, Keys, Line, FILE_ENV};

pub const SCENARIO_HELP: &str = "\
Writes nothing. Prints the toggle line `enable` would write, e.g. `1 48 percent=5`; with --json
one object: the line, the XID (null: the environment's), each key's canonical value, the shim's
environment variables that make the same scenario from process start, and the names of the
variables involved (so a caller never hard-codes them). Exit 2 with one line for a bad value.";

#[derive(Debug, Args)]
pub struct ScenarioArgs {
    #[command(flatten)]
    pub flags: EnableFlags,
    /// Print a JSON object
    #[arg(long)]
    pub json: bool,
}

/// Name/value pairs serialized as a JSON object in their own order (the canonical key order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered(pub Vec<(String, String)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The names of the variables a caller sets to run a child under the shim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Variables {
    /// `CUDA_FAULT_INJECTION_ENABLED`: `1` on from process start, `0` off until the toggle file says on.
    pub enabled: &'static str,
    /// `CUDA_FAULT_TOGGLE_FILE`.
    pub toggle_file: &'static str,
    /// `LD_PRELOAD`: the shim first, the caller's own entries after it.
    pub preload: &'static str,
    /// Every variable a scenario may set (`CUDA_XID_TYPE` and one per key): those not in `env`
    /// must not be inherited by the child, or it would run another scenario.
    pub scenario: Vec<&'static str>,
}

/// `scenario --json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScenarioJson {
    pub line: String,
    pub xid: Option<u64>,
    pub keys: Ordered,
    pub env: Ordered,
    pub variables: Variables,
}

/// Each set key's name and canonical value, in canonical order, read back from the rendered keys
/// so that every key the grammar has (and gains) is covered by its own rendering.
fn key_values(keys: &Keys) -> Vec<(Key, String)> {
    keys.to_string()
        .split_whitespace()
        .map(|word| {
            let (name, value) = word.split_once('=').expect("a rendered key is name=value");
            let key = Key::from_name(name.as_bytes()).expect("a rendered key is a known key");
            (key, value.to_string())
        })
        .collect()
}

/// The JSON description of an "on" line.
pub fn describe(line: &Line) -> ScenarioJson {
    let (xid, keys) = match line {
        Line::On { xid, keys } => (*xid, *keys),
        Line::Off => (None, Keys::default()),
    };
    let pairs = key_values(&keys);
    let mut env = vec![(ENV_ENABLED.to_string(), "1".to_string())];
    if let Some(x) = xid {
        env.push((ENV_XID.to_string(), x.to_string()));
    }
    env.extend(pairs.iter().map(|(k, v)| (k.env().to_string(), v.clone())));
    ScenarioJson {
        line: line.to_string(),
        xid,
        keys: Ordered(pairs.into_iter().map(|(k, v)| (k.name().to_string(), v)).collect()),
        env: Ordered(env),
        variables: Variables {
            enabled: ENV_ENABLED,
            toggle_file: FILE_ENV,
            preload: ENV_PRELOAD,
            scenario: std::iter::once(ENV_XID).chain(Key::ALL.iter().map(|k| k.env())).collect(),
        },
    }
}

/// Runs `scenario`.
pub fn run(args: &ScenarioArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let line = args.flags.line()?;
    let text = if args.json {
        serde_json::to_string(&describe(&line)).expect("serializable") + "\n"
    } else {
        format!("{line}\n")
    };
    out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(text: &str) -> Line {
        toggle_grammar::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn every_key_is_described_in_canonical_order() {
        let line = on("1 48 seed=7 percent=5.50 devices=1,0 sticky=true mode=hang count=3 after_calls=2 after_ms=9 \
                       scope=device functions=@launch surface=async");
        let json = serde_json::to_string(&describe(&line)).unwrap();
        assert_eq!(
            json,
            r#"{"line":"1 48 devices=0,1 after_calls=2 after_ms=9 mode=hang sticky=1 surface=async scope=device percent=5.5 count=3 functions=@launch seed=7","#
                .to_string()
                + r#""xid":48,"keys":{"devices":"0,1","after_calls":"2","after_ms":"9","mode":"hang","sticky":"1","surface":"async","scope":"device","percent":"5.5","count":"3","functions":"@launch","seed":"7"},"#
                + r#""env":{"CUDA_FAULT_INJECTION_ENABLED":"1","CUDA_XID_TYPE":"48","CUDA_FAULT_DEVICES":"0,1","CUDA_FAULT_AFTER_CALLS":"2","CUDA_FAULT_AFTER_MS":"9","CUDA_FAULT_MODE":"hang","CUDA_FAULT_STICKY":"1","CUDA_FAULT_SURFACE":"async","CUDA_FAULT_SCOPE":"device","CUDA_FAULT_PERCENT":"5.5","CUDA_FAULT_COUNT":"3","CUDA_FAULT_FUNCTIONS":"@launch","CUDA_FAULT_SEED":"7"},"#
                + r#""variables":{"enabled":"CUDA_FAULT_INJECTION_ENABLED","toggle_file":"CUDA_FAULT_TOGGLE_FILE","preload":"LD_PRELOAD","scenario":["CUDA_XID_TYPE","CUDA_FAULT_DEVICES","CUDA_FAULT_AFTER_CALLS","CUDA_FAULT_AFTER_MS","CUDA_FAULT_MODE","CUDA_FAULT_STICKY","CUDA_FAULT_SURFACE","CUDA_FAULT_SCOPE","CUDA_FAULT_PERCENT","CUDA_FAULT_COUNT","CUDA_FAULT_FUNCTIONS","CUDA_FAULT_SEED"]}}"#
        );
    }

    #[test]
    fn keys_and_env_cover_every_key_of_the_grammar() {
        // One line that sets every key: the description names each one, whatever keys exist.
        let mut keys = Keys::default();
        let sample = |k: Key| match k.name() {
            "devices" => "1",
            "functions" => "cudaMalloc",
            "mode" => "hang",
            "sticky" => "1",
            "percent" => "5",
            "surface" => "async",
            "scope" => "device",
            _ => "3",
        };
        for k in Key::ALL {
            // A key the grammar gains with another value syntax fails here first: give it a sample.
            keys.set(k, sample(k).as_bytes()).unwrap_or_else(|e| panic!("sample for {}: {e}", k.name()));
        }
        let d = describe(&Line::On { xid: None, keys });
        assert_eq!(d.keys.0.len(), Key::ALL.len());
        for k in Key::ALL {
            assert!(d.keys.0.iter().any(|(n, _)| n == k.name()), "{} missing", k.name());
            assert!(d.env.0.iter().any(|(n, _)| n == k.env()), "{} missing", k.env());
            assert!(d.variables.scenario.contains(&k.env()));
        }
        assert!(!d.env.0.iter().any(|(n, _)| n == ENV_XID), "no XID given: the environment's");
        assert_eq!(d.xid, None);
        assert_eq!(d.line, format!("1{keys}"));
    }
}
