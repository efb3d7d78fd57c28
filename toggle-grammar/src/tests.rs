extern crate std;

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

fn on(bytes: &[u8]) -> (Option<u64>, Keys) {
    match parse(bytes) {
        Ok(Line::On { xid, keys }) => (xid, keys),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn refused(bytes: &[u8]) -> String {
    match parse(bytes) {
        Err(e) => e.to_string(),
        Ok(line) => panic!("{:?} parsed as {line}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn the_documented_forms() {
    assert_eq!(on(b"1"), (None, Keys::default()));
    assert_eq!(on(b"  \n1 48\n"), (Some(48), Keys::default()));
    assert_eq!(on(b"1\x0b79\x0c"), (Some(79), Keys::default()), "vertical tab and form feed are spaces");
    assert_eq!(parse(b"0\n"), Ok(Line::Off));
    assert_eq!(parse(b"0 whatever=1 junk"), Ok(Line::Off));
    let (xid, k) = on(b"1 79 devices=1 after_ms=5000\n");
    assert_eq!((xid, k.after_ms, k.devices.map(|d| d.ordinals)), (Some(79), Some(5000), Some(2)));
    let (_, k) = on(b"1 mode=hang sticky=true percent=0.5 count=3 functions=@launch,cudaMalloc seed=7");
    assert_eq!((k.mode, k.sticky, k.count, k.seed), (Some(Mode::Hang), Some(true), Some(3), Some(7)));
    assert_eq!(k.percent, Percent::from_micros(500_000));
    assert_eq!(on(b"1 after_ms=18446744073709551615").1.after_ms, Some(u64::MAX));
    let (_, k) = on(b"1 31 scope=device surface=immediate");
    assert_eq!((k.surface, k.scope), (Some(Surface::Immediate), Some(Scope::Device)));
    let (_, k) = on(b"1 79 surface=async scope=process");
    assert_eq!((k.surface, k.scope), (Some(Surface::Async), Some(Scope::Process)));
    assert_eq!(Line::On { xid: Some(79), keys: k }.to_string(), "1 79 surface=async scope=process");
}

#[test]
fn refusals_say_what_is_wrong_in_one_line() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "is empty"),
        (b" \n\t", "is empty"),
        (b"true", "starts with 'true', not the word 1 or 0"),
        (b"\x00\xff", "starts with '\\x00\\xff', not the word 1 or 0"),
        (b"1 48 49", "'49' is neither the XID (right after 1) nor key=value"),
        (b"1 mode=hang 48", "'48' is neither the XID (right after 1) nor key=value"),
        (b"1 abc", "'abc' is neither the XID (right after 1) nor key=value"),
        (b"1 18446744073709551616", "'18446744073709551616' is out of range (at most 18446744073709551615)"),
        (b"1 devices=64", "devices: device '64' is outside 0..63"),
        (b"1 devices=GPU-12345678-abcd", "devices: 'GPU-12345678-abcd' is neither an ordinal 0..63 nor a GPU-/MIG- UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
        (b"1 devices=1,,2", "devices: has an empty item"),
        (b"1 devices=", "devices: has an empty item"),
        (b"1 after_calls=10000000000000000000000", "after_calls: '10000000000000000000000' is out of range (at most 18446744073709551615)"),
        (b"1 after_ms=-1", "after_ms: '-1' is not a number"),
        (b"1 after_calls=1e3", "after_calls: '1e3' is not a number"),
        (b"1 mode=crash", "mode: 'crash' is not error or hang"),
        (b"1 sticky=2", "sticky: '2' is not 1, 0, true or false"),
        (b"1 mode=hang mode=error", "mode: is given twice"),
        (b"1 surface=later", "surface: 'later' is not immediate or async"),
        (b"1 surface=", "surface: '' is not immediate or async"),
        (b"1 scope=node", "scope: 'node' is not process or device"),
        (b"1 scope=process scope=device", "scope: is given twice"),
        (b"1 colour=blue", "'colour=blue' is not a key (devices, after_calls, after_ms, mode, sticky, surface, scope, percent, count, functions, seed)"),
        (b"1 =", "'=' is not a key (devices, after_calls, after_ms, mode, sticky, surface, scope, percent, count, functions, seed)"),
        (b"1 percent=0", "percent: '0' is not above 0 and at most 100"),
        (b"1 percent=100.5", "percent: '100.5' is not above 0 and at most 100"),
        (b"1 percent=0.0000001", "percent: '0.0000001' has more than 6 decimals"),
        (b"1 percent=.5", "percent: '.5' is not a percentage like 5 or 0.1"),
        (b"1 percent=5.", "percent: '5.' is not a percentage like 5 or 0.1"),
        (b"1 percent=5%", "percent: '5%' is not a percentage like 5 or 0.1"),
        (b"1 count=0", "count: must be at least 1"),
        (b"1 functions=cudaMallocc", "functions: 'cudaMallocc' is not a function in hooks.list"),
        (b"1 functions=cuMemAlloc_v9", "functions: 'cuMemAlloc_v9' is not a function in hooks.list"),
        (b"1 functions=cuGetErrorString", "functions: 'cuGetErrorString' never faults (a pure lookup)"),
        (b"1 functions=@kernels", "functions: '@kernels' is not a family (@launch, @memcpy, @sync, @alloc)"),
        (b"1 functions=@launch,", "functions: has an empty item"),
    ];
    for (bytes, want) in cases {
        let got = refused(bytes);
        assert_eq!(&got, want, "{:?}", String::from_utf8_lossy(bytes));
        assert!(!got.contains('\n'));
    }
    let nine: Vec<String> = (1..=9).map(|i| format!("GPU-{i:08x}-0000-4000-8000-000000000001")).collect();
    assert_eq!(refused(format!("1 devices={}", nine.join(",")).as_bytes()), "devices: lists more than 8 UUIDs");
    let long = format!("1 devices={}", "1,".repeat(600));
    assert_eq!(refused(long.as_bytes()), "is longer than 1024 bytes");
    let mut at_limit = String::from("1 79");
    at_limit.push_str(&" ".repeat(MAX_LEN - at_limit.len()));
    assert!(parse(at_limit.as_bytes()).is_ok(), "exactly 1024 bytes is fine");
    assert_eq!(refused(format!("{at_limit} ").as_bytes()), "is longer than 1024 bytes");
}

#[test]
fn percent_parses_renders_and_draws_exactly() {
    for (text, micros, shown) in [
        ("5", 5_000_000, "5"),
        ("0.1", 100_000, "0.1"),
        ("100", 100_000_000, "100"),
        ("100.000000", 100_000_000, "100"),
        ("007.250", 7_250_000, "7.25"),
        ("0.000001", 1, "0.000001"),
        ("12.345678", 12_345_678, "12.345678"),
    ] {
        let p = Percent::parse(text.as_bytes()).unwrap();
        assert_eq!((p.micros(), p.to_string().as_str()), (micros, shown), "{text}");
    }
    let half = Percent::parse(b"50").unwrap();
    assert!(half.hits(0) && half.hits(u64::MAX / 2) && !half.hits(u64::MAX / 2 + 1) && !half.hits(u64::MAX));
    assert!(Percent::HUNDRED.hits(u64::MAX));
    let tiny = Percent::from_micros(1).unwrap();
    assert!(tiny.hits(u64::MAX / 100_000_000) && !tiny.hits(u64::MAX / 100_000_000 + 1));
}

#[test]
fn devices_keep_mig_and_order() {
    let d = Devices::parse(b"3,MIG-FA4EC0DA-0000-4000-8000-000000000001,0,GPU-fa4ec0da-0000-4000-8000-000000000002,3")
        .unwrap();
    assert_eq!(d.to_string(), "0,3,MIG-fa4ec0da-0000-4000-8000-000000000001,GPU-fa4ec0da-0000-4000-8000-000000000002");
    assert!(d.has_ordinal(0) && d.has_ordinal(3) && !d.has_ordinal(1) && !d.has_ordinal(64) && !d.has_ordinal(-1));
    assert!(d.has_uuid(&[0xfa, 0x4e, 0xc0, 0xda, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1]));
}

#[test]
fn functions_resolve_names_and_families() {
    let f = Functions::parse(b"cuMemAlloc_v2,@launch,cudaMalloc").unwrap();
    assert_eq!(f.to_string(), "@launch,cudaMalloc,cuMemAlloc");
    let id = |n: &[u8]| hook_list::function_named(n).unwrap();
    assert!(f.contains(id(b"cuLaunchKernel")) && f.contains(id(b"cudaGraphLaunch_ptsz")));
    assert!(f.contains(id(b"cuMemAlloc")) && !f.contains(id(b"cudaFree")) && !f.contains(id(b"cudaMemcpy")));
    let members = f.members();
    for (i, _) in hook_list::FUNCTIONS.iter().enumerate() {
        assert_eq!(members[i / 64] & (1 << (i % 64)) != 0, f.contains(i as u16));
    }
}

#[test]
fn the_scenario_reads_as_a_sentence() {
    let (_, k) =
        on(b"1 devices=1 after_ms=5000 after_calls=3 mode=hang sticky=1 percent=2.5 count=4 functions=@sync seed=9 \
          scope=process surface=async");
    let s = k.over(&Scenario::default());
    assert_eq!(
        s.to_string(),
        " (devices 1; functions @sync; after 5000 ms; after 3 calls; 2.5% of calls; seed 9; at most 4 faults; hang; \
         sticky; surface async; scope process)"
    );
    assert_eq!(Scenario::default().to_string(), "");
    let env = Scenario {
        after_calls: 7,
        mode: Mode::Hang,
        sticky: true,
        surface: Some(Surface::Async),
        scope: Some(Scope::Process),
        ..Scenario::default()
    };
    let (_, k) = on(b"1 sticky=0 after_ms=1 scope=device");
    let s = k.over(&env);
    assert_eq!((s.after_calls, s.after_ms, s.mode, s.sticky), (7, 1, Mode::Hang, false));
    assert_eq!((s.surface, s.scope), (Some(Surface::Async), Some(Scope::Device)), "a key overrides its variable alone");
}

// ---- properties ------------------------------------------------------------------------------

fn arb_keys() -> impl Strategy<Value = Keys> {
    let name = prop::sample::select(
        hook_list::HOOKS.iter().filter(|h| h.flags & hook_list::flags::EXEMPT == 0).map(|h| h.name).collect::<Vec<_>>(),
    );
    let family = prop::sample::select(hook_list::FAMILIES.iter().map(|f| f.name).collect::<Vec<_>>());
    let functions =
        prop::collection::vec(prop_oneof![name.prop_map(String::from), family.prop_map(|f| format!("@{f}"))], 1..5)
            .prop_map(|v| Functions::parse(v.join(",").as_bytes()).unwrap());
    let uuid = (any::<bool>(), any::<[u8; 16]>()).prop_map(|(mig, bytes)| Uuid { mig, bytes });
    let devices = (any::<u64>(), prop::collection::vec(uuid, 0..=MAX_UUIDS)).prop_filter_map("non-empty", |(o, u)| {
        let mut items: Vec<String> = (0..64).filter(|i| o & (1 << i) != 0).map(|i| i.to_string()).collect();
        items.extend(u.iter().map(|u| u.to_string()));
        (!items.is_empty()).then(|| Devices::parse(items.join(",").as_bytes()).unwrap())
    });
    (
        (prop::option::of(devices), prop::option::of(any::<u64>()), prop::option::of(any::<u64>())),
        (
            prop::option::of(prop_oneof![Just(Mode::Error), Just(Mode::Hang)]),
            prop::option::of(any::<bool>()),
            prop::option::of(prop_oneof![Just(Surface::Immediate), Just(Surface::Async)]),
            prop::option::of(prop_oneof![Just(Scope::Process), Just(Scope::Device)]),
        ),
        (
            prop::option::of((1u32..=100_000_000).prop_map(|m| Percent::from_micros(m).unwrap())),
            prop::option::of(1u64..),
        ),
        (prop::option::of(functions), prop::option::of(any::<u64>())),
    )
        .prop_map(
            |(
                (devices, after_calls, after_ms),
                (mode, sticky, surface, scope),
                (percent, count),
                (functions, seed),
            )| Keys {
                devices,
                after_calls,
                after_ms,
                mode,
                sticky,
                surface,
                scope,
                percent,
                count,
                functions,
                seed,
            },
        )
}

proptest! {
    #[test]
    fn a_rendered_line_parses_back_to_itself(xid in prop::option::of(any::<u64>()), keys in arb_keys()) {
        let line = Line::On { xid, keys };
        let text = line.to_string();
        if text.len() <= MAX_LEN {
            prop_assert_eq!(parse(text.as_bytes()), Ok(line));
        } else {
            prop_assert_eq!(parse(text.as_bytes()).unwrap_err().problem, Problem::TooLong);
        }
    }

    #[test]
    fn arbitrary_bytes_parse_to_a_canonical_fixed_point(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(line) = parse(&bytes) {
            let text = line.to_string();
            if text.len() <= MAX_LEN {
                prop_assert_eq!(parse(text.as_bytes()), Ok(line));
            }
        }
    }

    #[test]
    fn words_from_the_grammar_s_alphabet_never_panic(words in prop::collection::vec(
        prop_oneof![
            Just("1".to_string()), Just("0".to_string()), "[0-9]{1,22}",
            (prop::sample::select(Key::ALL.iter().map(|k| k.name()).collect::<Vec<_>>()), "[0-9a-zA-Z@,.=_-]{0,40}")
                .prop_map(|(k, v)| format!("{k}={v}")),
        ], 0..8)) {
        let text = words.join(" ");
        let _ = parse(text.as_bytes());
    }
}
