//! `verify`'s report as text: a summary line, a table of the pods, why each pod that does not
//! carry the injection does not, a table of their nodes.

use super::verify::Report;

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// The report as text: a summary line, the pods, the nodes.
pub fn text(r: &Report) -> String {
    let what = match (&r.workload, &r.selector) {
        (Some(w), Some(s)) => format!(" {w} (pods {s})"),
        (None, Some(s)) if !s.is_empty() => format!(" pods {s}"),
        _ => String::new(),
    };
    let mut out =
        format!("namespace {}{what}: {} of {} pods carry the injection\n\n", r.namespace, r.injected, r.pods.len());
    let mut rows = vec![["POD", "NODE", "SHIM-INSTALL", "LD_PRELOAD", "/cuda-fault", "/host-fault", "INJECTED"]
        .map(String::from)
        .to_vec()];
    for p in &r.pods {
        rows.push(vec![
            p.pod.clone(),
            p.node.clone().unwrap_or_else(|| "-".into()),
            p.shim_install.clone(),
            list(&p.preloaded),
            list(&p.shim_mounted),
            list(&p.toggle_mounted),
            if p.injected { "yes" } else { "no" }.into(),
        ]);
    }
    out.push_str(&table(&rows));
    let why: Vec<String> =
        r.pods.iter().filter_map(|p| p.reason.as_ref().map(|reason| format!("{}: {reason}\n", p.pod))).collect();
    if !why.is_empty() {
        out.push_str("\nnot injected:\n");
        out.extend(why);
    }
    if !r.nodes.is_empty() {
        let mut rows = vec![["NODE", "TOGGLE FILE", "HOLD POD"].map(String::from).to_vec()];
        for n in &r.nodes {
            let toggle = match (&n.toggle, &n.error) {
                (Some(t), _) => t["effect"].as_str().unwrap_or("?").to_string(),
                (None, Some(e)) => format!("unknown: {e}"),
                (None, None) => "unknown".into(),
            };
            rows.push(vec![n.node.clone(), toggle, n.hold_pod.clone().unwrap_or_else(|| "-".into())]);
        }
        out.push('\n');
        out.push_str(&table(&rows));
    }
    out
}
