//! Results, and the side-by-side table.

use std::collections::BTreeMap;

/// One run's numbers, by metric key.
pub(crate) type Metrics = BTreeMap<&'static str, f64>;

/// What the relay must reach against the broker.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// relay <= broker / 2
    AtMostHalf,
    /// relay <= broker
    AtMost,
    /// relay >= broker
    AtLeast,
    /// relay < broker
    Below,
    /// relay == 0, whatever the broker does
    Zero,
}

/// A metric: its key, scenario, label and the relay's goal.
struct Desc {
    key: &'static str,
    scenario: &'static str,
    label: &'static str,
    goal: Option<Goal>,
}

const METRICS: &[Desc] = &[
    Desc {
        key: "a.rate",
        scenario: "(a)",
        label: "delivered msg/s",
        goal: None,
    },
    Desc {
        key: "a.cpu",
        scenario: "(a)",
        label: "broker CPU us / delivered msg (all nodes + database)",
        goal: Some(Goal::AtMostHalf),
    },
    Desc {
        key: "a.db_cpu",
        scenario: "(a)",
        label: "of which database CPU us / delivered msg",
        goal: None,
    },
    Desc {
        key: "ap.rate",
        scenario: "(a')",
        label: "delivered msg/s (paced)",
        goal: None,
    },
    Desc {
        key: "ap.p50",
        scenario: "(a')",
        label: "latency p50 ms",
        goal: None,
    },
    Desc {
        key: "ap.p99",
        scenario: "(a')",
        label: "latency p99 ms",
        goal: Some(Goal::AtMost),
    },
    Desc {
        key: "ap.max",
        scenario: "(a')",
        label: "latency max ms",
        goal: None,
    },
    Desc {
        key: "ap.cpu",
        scenario: "(a')",
        label: "broker CPU us / delivered msg (all nodes + database)",
        goal: None,
    },
    Desc {
        key: "ap.db_cpu",
        scenario: "(a')",
        label: "of which database CPU us / delivered msg",
        goal: None,
    },
    Desc {
        key: "b.publish",
        scenario: "(b)",
        label: "publish msg/s (acknowledged)",
        goal: None,
    },
    Desc {
        key: "b.drain",
        scenario: "(b)",
        label: "drain msg/s",
        goal: Some(Goal::AtLeast),
    },
    Desc {
        key: "b.drain_cpu",
        scenario: "(b)",
        label: "broker CPU us / drained msg (logins included)",
        goal: None,
    },
    Desc {
        key: "b.drain_cpu_settled",
        scenario: "(b)",
        label: "the same, until the broker is idle after the drain",
        goal: None,
    },
    Desc {
        key: "b.rss_mb",
        scenario: "(b)",
        label: "broker RSS with the queue, MB",
        goal: None,
    },
    Desc {
        key: "b.rss_per_msg",
        scenario: "(b)",
        label: "RSS growth B / queued msg",
        goal: Some(Goal::Below),
    },
    Desc {
        key: "b.disk_per_msg",
        scenario: "(b)",
        label: "disk B / queued msg",
        goal: None,
    },
    Desc {
        key: "c.acked",
        scenario: "(c)",
        label: "acknowledged before SIGKILL",
        goal: None,
    },
    Desc {
        key: "c.lost",
        scenario: "(c)",
        label: "acknowledged msgs lost",
        goal: Some(Goal::Zero),
    },
];

/// Every round's numbers for the relay and the broker.
#[derive(Debug)]
pub(crate) struct Table {
    with_mqtt: bool,
    mqtt_name: String,
    relay: Vec<Metrics>,
    mqtt: Vec<Metrics>,
    /// A second relay column (its heading and runs), if any.
    second: Option<(String, Vec<Metrics>)>,
}

fn median(runs: &[Metrics], key: &str) -> Option<f64> {
    let mut v: Vec<f64> = runs.iter().filter_map(|m| m.get(key).copied()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn spread(runs: &[Metrics], key: &str) -> String {
    let v: Vec<f64> = runs.iter().filter_map(|m| m.get(key).copied()).collect();
    if v.len() < 2 {
        return String::new();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" [{}..{}]", fmt(lo), fmt(hi))
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Table {
    pub(crate) fn new(with_mqtt: bool, mqtt_name: &str) -> Self {
        Self {
            with_mqtt,
            mqtt_name: mqtt_name.into(),
            relay: Vec::new(),
            mqtt: Vec::new(),
            second: None,
        }
    }

    /// Adds a second relay column headed `name`.
    pub(crate) fn with_second_relay(&mut self, name: &str) {
        self.second = Some((name.into(), Vec::new()));
    }

    /// Adds a run of the second relay.
    pub(crate) fn add_second_relay(&mut self, m: Metrics) {
        if let Some((_, runs)) = &mut self.second {
            runs.push(m);
        }
    }

    pub(crate) fn add_relay(&mut self, m: Metrics) {
        self.relay.push(m);
    }

    pub(crate) fn add_mqtt(&mut self, m: Metrics) {
        self.mqtt.push(m);
    }

    /// The table, as Markdown.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if let (true, Some((name, _))) = (self.with_mqtt, &self.second) {
            out.push_str(&format!(
                "| scenario | metric | tacit-relay | {name} | {m} | relay / {m} | no fsync / {m} | target |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
                m = self.mqtt_name
            ));
        } else if self.with_mqtt {
            out.push_str(&format!(
                "| scenario | metric | tacit-relay | {} | relay / {} | target |\n| --- | --- | ---: | ---: | ---: | --- |\n",
                self.mqtt_name, self.mqtt_name
            ));
        } else {
            out.push_str("| scenario | metric | tacit-relay |\n| --- | --- | ---: |\n");
        }
        for d in METRICS {
            let r = median(&self.relay, d.key);
            let m = median(&self.mqtt, d.key);
            if r.is_none() && m.is_none() {
                continue;
            }
            let cell = |v: Option<f64>, runs: &[Metrics]| match v {
                Some(v) => format!("{}{}", fmt(v), spread(runs, d.key)),
                None => "n/a".into(),
            };
            if !self.with_mqtt {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    d.scenario,
                    d.label,
                    cell(r, &self.relay)
                ));
                continue;
            }
            let ratio_of = |r: Option<f64>| match (r, m) {
                (Some(r), Some(m)) if m != 0.0 && !r.is_nan() && !m.is_nan() => {
                    format!("{:.2}", r / m)
                }
                _ => "".into(),
            };
            let ratio = ratio_of(r);
            let target = match (d.goal, r, m) {
                (Some(Goal::Zero), Some(r), _) => verdict(r == 0.0, "= 0"),
                (Some(g), Some(r), Some(m)) if !r.is_nan() && !m.is_nan() => match g {
                    Goal::AtMostHalf => verdict(r <= m / 2.0, "<= 0.5x"),
                    Goal::AtMost => verdict(r <= m, "<= 1x"),
                    Goal::AtLeast => verdict(r >= m, ">= 1x"),
                    Goal::Below => verdict(r < m, "< 1x"),
                    Goal::Zero => verdict(r == 0.0, "= 0"),
                },
                _ => String::new(),
            };
            if let Some((_, runs)) = &self.second {
                let s = median(runs, d.key);
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    d.scenario,
                    d.label,
                    cell(r, &self.relay),
                    cell(s, runs),
                    cell(m, &self.mqtt),
                    ratio,
                    ratio_of(s),
                    target
                ));
                continue;
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                d.scenario,
                d.label,
                cell(r, &self.relay),
                cell(m, &self.mqtt),
                ratio,
                target
            ));
        }
        out
    }

    /// Fails if the relay lost an acknowledged message.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        for m in &self.relay {
            if let Some(&lost) = m.get("c.lost") {
                if lost != 0.0 {
                    anyhow::bail!("the relay lost {lost} acknowledged messages after SIGKILL");
                }
            }
        }
        Ok(())
    }
}

fn verdict(ok: bool, what: &str) -> String {
    format!("{} ({what})", if ok { "met" } else { "missed" })
}
