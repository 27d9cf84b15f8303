//! `perfRun` for the browser: times a workload of [`crate::perf`] with
//! `performance.now()`.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::perf::{run, Workloads};

fn now() -> Result<f64, JsValue> {
    let performance = Reflect::get(&js_sys::global(), &"performance".into())?;
    let now = Reflect::get(&performance, &"now".into())?;
    let now: js_sys::Function = now.dyn_into()?;
    now.call0(&performance)?
        .as_f64()
        .ok_or_else(|| Error::invalid("performance.now() is not a number").into())
}

/// Runs workload `name` (`"session-setup"`, `"chain-step"`, `"ping-pong"`)
/// `iterations` times after 10 runs to warm up; resolves the milliseconds
/// the timed runs took in all.
#[wasm_bindgen(js_name = perfRun)]
pub fn perf_run(name: &str, iterations: u32) -> Result<f64, JsValue> {
    let fail = |e: crate::perf::PerfError| JsValue::from(Error::new("session", e.0));
    let mut w = Workloads::new().map_err(fail)?;
    run(&mut w, name, 10).map_err(fail)?;
    let start = now()?;
    run(&mut w, name, iterations).map_err(fail)?;
    Ok(now()? - start)
}
