//! What each party (the server, the processes it depends on, the
//! generator) spent per delivery.

use serde_json::json;

use crate::procfs::CpuMeter;
use crate::report::Report;

/// Adds the CPU figures and what each party spent per delivery (the
/// server, the aux processes when given, the generator), over `delivered`.
pub(crate) fn report_cpu_per_delivery(report: &mut Report, cpu: &CpuMeter, delivered: u64) {
    let (value, human) = cpu.stop();
    report.line(human);
    let per = |key: &str| {
        value[key]
            .as_f64()
            .map(|s| s * 1e9 / delivered.max(1) as f64)
    };
    let (server, aux, generator) = (
        per("server_cpu_s"),
        per("aux_cpu_s"),
        per("generator_cpu_s"),
    );
    let fmt = |ns: Option<f64>| ns.map_or("?".into(), |ns| format!("{:.2} us", ns / 1e3));
    let mut line = format!("  cpu per delivery: server {}", fmt(server));
    if aux.is_some() {
        line.push_str(&format!(", aux processes {}", fmt(aux)));
    }
    line.push_str(&format!(", generator {}", fmt(generator)));
    report.line(line);
    report.result("cpu", value);
    let mut each = json!({"server_ns": server, "generator_ns": generator});
    if aux.is_some() {
        each["aux_ns"] = json!(aux);
    }
    report.result("cpu_per_delivery", each);
}
