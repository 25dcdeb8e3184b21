//! The machine-readable end of every benchmark: one `RESULT <name> <value>
//! <unit>` line per figure, printed last, after the human-readable report.
//! `benches/README.md` lists every name with its unit and meaning.

/// The figures of one benchmark run, in the order they were measured.
#[derive(Default)]
pub struct Results(Vec<(String, f64, &'static str)>);

impl Results {
    /// Records figure `name` (lower case, digits and `_`) of `value` in
    /// `unit` (`s`, `ms`, `us`, `%`, `GB/s`, `MiB`, `x`, `count`, `1`).
    pub fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "RESULT name '{name}' must be lower case, digits and '_'"
        );
        self.0.push((name, value, unit));
    }

    /// Prints every figure as `RESULT <name> <value> <unit>`, six
    /// significant digits.
    pub fn print(&self) {
        for (name, value, unit) in &self.0 {
            println!("RESULT {name} {} {unit}", significant(*value, 6));
        }
    }
}

/// `v` with `digits` significant digits, without exponent.
fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (digits - 1 - v.abs().log10().floor() as i32).max(0);
    format!("{v:.*}", decimals as usize)
}

/// The 1-minute load average, to judge how noisy the timings are.
#[allow(dead_code)] // not every benchmark reports it
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// This process's peak resident set (VmHWM), MiB.
#[allow(dead_code)] // not every benchmark reports it
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
