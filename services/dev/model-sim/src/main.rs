//! model-sim: an OpenAI Responses API stand-in for development and tests. The Codex CLI (and
//! anything else speaking `POST /v1/responses`) gets scripted turns — tool calls that make it run
//! commands and edit files, then a final message — with token usage, so agent runs work without a
//! model key. Never deployed to production.
//!
//! Scenarios are JSON data files (`scenarios/*.json`, built in, plus any in
//! `CODEXK8S_MODEL_SIM_SCENARIOS_DIR`): `{name, match: [substrings], turns: [{tool, arguments} |
//! {message}], usage}`. A request plays the first scenario whose `match` text occurs in its
//! current prompt (the last user messages; else anywhere in the request; else `default`); the
//! turn is the number of tool results since that prompt, so a conversation advances one scripted
//! turn per request, and a resumed session with a new prompt plays its own scenario from the start. Streaming answers follow the Responses API's Server-Sent
//! Events (`response.created`, `response.output_item.added|done`, `response.output_text.delta`,
//! `response.completed` with `usage`); `stream: false` answers the response object.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ck8s_config::{ConfigError, Layers};
use ck8s_service::health::{health_router, with_request_metrics};
use ck8s_service::metrics::MetricsBuilder;
use ck8s_service::{Shutdown, server};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The built-in scenarios.
/// Built-in scenarios, in matching order (more specific first).
const BUILT_IN: [&str; 4] = [
    include_str!("../scenarios/review-hello.json"),
    include_str!("../scenarios/dev-hello-louder.json"),
    include_str!("../scenarios/dev-hello.json"),
    include_str!("../scenarios/default.json"),
];
/// Requests larger than this are refused (413).
const MAX_BODY: usize = 8 << 20;

#[derive(Debug, Clone, Deserialize)]
struct Usage {
    input_tokens: u64,
    #[serde(default)]
    cached_tokens: u64,
    output_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Turn {
    Tool { tool: String, arguments: Value },
    Message { message: String },
}

#[derive(Debug, Clone, Deserialize)]
struct Scenario {
    name: String,
    #[serde(default, rename = "match")]
    matches: Vec<String>,
    turns: Vec<Turn>,
    usage: Usage,
}

struct Sim {
    scenarios: Vec<Scenario>,
    api_key: Option<SecretString>,
    /// Every request (scenario, turn, and the request body), for tests.
    requests: Mutex<Vec<Value>>,
}

type Shared = Arc<Sim>;

struct Config {
    http_addr: SocketAddr,
    shutdown_timeout: Duration,
    scenarios_dir: Option<std::path::PathBuf>,
    api_key: Option<SecretString>,
}

impl Config {
    fn load(layers: &Layers) -> Result<Self, ConfigError> {
        let mut r = layers.reader();
        let cfg = Self {
            http_addr: r.socket_addr("MODEL_SIM_HTTP_ADDR", "127.0.0.1:8091"),
            shutdown_timeout: r.duration("SHUTDOWN_TIMEOUT", Duration::from_secs(10)),
            scenarios_dir: r.opt_string("MODEL_SIM_SCENARIOS_DIR").map(Into::into),
            api_key: r.opt_string("MODEL_SIM_API_KEY").map(SecretString::from),
        };
        r.finish()?;
        Ok(cfg)
    }
}

/// Why model-sim cannot start.
#[derive(Debug, thiserror::Error)]
enum SimError {
    #[error("cannot read scenarios from {}; check CODEXK8S_MODEL_SIM_SCENARIOS_DIR", .0.display())]
    ScenariosDir(std::path::PathBuf, #[source] std::io::Error),
    #[error("{}", .0.display())]
    ScenarioFile(std::path::PathBuf, #[source] std::io::Error),
    #[error("{}: {error}", .file.display())]
    BadScenario { file: std::path::PathBuf, error: ScenarioError },
    #[error("built-in scenario: {0}")]
    BadBuiltIn(ScenarioError),
    #[error(transparent)]
    Service(#[from] ck8s_service::ServiceError),
}

/// A scenario file that is not a usable scenario.
#[derive(Debug, thiserror::Error)]
enum ScenarioError {
    #[error("not a scenario: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("scenario {0} has no turns")]
    NoTurns(String),
    #[error("scenario {0} must end with a message")]
    NoFinalMessage(String),
}

/// Parses the built-in scenarios and those of `dir`; a bad file is an error naming it.
fn load_scenarios(dir: Option<&std::path::Path>) -> Result<Vec<Scenario>, SimError> {
    let mut out = Vec::new();
    if let Some(dir) = dir {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| SimError::ScenariosDir(dir.to_path_buf(), e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| SimError::ScenarioFile(f.clone(), e))?;
            out.push(parse_scenario(&text).map_err(|error| SimError::BadScenario { file: f.clone(), error })?);
        }
    }
    for text in BUILT_IN {
        out.push(parse_scenario(text).map_err(SimError::BadBuiltIn)?);
    }
    Ok(out)
}

fn parse_scenario(text: &str) -> Result<Scenario, ScenarioError> {
    let s: Scenario = serde_json::from_str(text)?;
    if s.turns.is_empty() {
        return Err(ScenarioError::NoTurns(s.name));
    }
    if !matches!(s.turns.last(), Some(Turn::Message { .. })) {
        return Err(ScenarioError::NoFinalMessage(s.name));
    }
    Ok(s)
}

/// An OpenAI-shaped error.
fn api_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))).into_response()
}

/// All text of the request (instructions and input), for scenario matching.
fn request_text(req: &Value) -> String {
    let mut text = req["instructions"].as_str().unwrap_or_default().to_string();
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push('\n');
                out.push_str(s);
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&req["input"], &mut text);
    text
}

/// The current prompt: the text of the last run of user messages in the input (a resumed session
/// carries its earlier prompts before it), and the index after which this turn's items start.
fn current_prompt(req: &Value) -> (String, usize) {
    let Some(items) = req["input"].as_array() else { return (req["input"].as_str().unwrap_or_default().to_string(), 0) };
    let is_user = |i: &Value| i["role"] == "user";
    let Some(last) = items.iter().rposition(is_user) else { return (String::new(), 0) };
    let mut first = last;
    while first > 0 && is_user(&items[first - 1]) {
        first -= 1;
    }
    let mut text = String::new();
    for item in &items[first..=last] {
        text.push_str(&request_text(&json!({"input": item})));
    }
    (text, last + 1)
}

/// The scenario of a request: the first whose `match` text is in the current prompt, else the
/// first whose text is anywhere in the request, else `default`.
fn pick<'a>(scenarios: &'a [Scenario], req: &Value) -> Option<&'a Scenario> {
    let hit = |text: &str| scenarios.iter().find(|s| s.matches.iter().any(|m| !m.is_empty() && text.contains(m.as_str())));
    hit(&current_prompt(req).0).or_else(|| hit(&request_text(req))).or_else(|| scenarios.iter().find(|s| s.name == "default"))
}

/// The scripted turn a request is at: the tool results since the current prompt.
fn turn_of(req: &Value) -> usize {
    let start = current_prompt(req).1;
    req["input"].as_array().map(|a| a.iter().skip(start).filter(|i| i["type"] == "function_call_output").count()).unwrap_or(0)
}

fn sse(event: &Value) -> String {
    format!("event: {}\ndata: {}\n\n", event["type"].as_str().unwrap_or("message"), event)
}

async fn responses(State(sim): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(key) = &sim.api_key {
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !ck8s_crypto::constant_time_eq(sent.as_bytes(), key.expose_secret().as_bytes()) {
            return api_error(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.");
        }
    }
    if body.len() > MAX_BODY {
        return api_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large", "The request is too large.");
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_json", "The body must be a JSON object."),
    };
    let Some(model) = req["model"].as_str().filter(|m| !m.is_empty()).map(String::from) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_required_parameter",
            "Missing required parameter: 'model'.",
        );
    };
    if !req["input"].is_array() && !req["input"].is_string() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_required_parameter",
            "Missing required parameter: 'input'.",
        );
    }
    let Some(scenario) = pick(&sim.scenarios, &req) else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", "no_scenario", "model-sim has no scenario for this request.");
    };
    let turn_index = turn_of(&req).min(scenario.turns.len() - 1);
    let turn = &scenario.turns[turn_index];
    if let Ok(mut r) = sim.requests.lock() {
        r.push(json!({"scenario": scenario.name, "turn": turn_index, "model": model, "request": req}));
    }
    let n = sim.requests.lock().map(|r| r.len()).unwrap_or(0);
    let id = format!("resp_sim_{n:06}");
    let item = match turn {
        Turn::Tool { tool, arguments } => json!({
            "type": "function_call", "id": format!("fc_{n:06}"), "call_id": format!("call_{n:06}"), "name": tool,
            "arguments": arguments.to_string(), "status": "completed",
        }),
        Turn::Message { message } => json!({
            "type": "message", "id": format!("msg_{n:06}"), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": message, "annotations": []}],
        }),
    };
    let u = &scenario.usage;
    let usage = json!({
        "input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    });
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let response = |status: &str, output: Value, usage: Value| json!({"id": id, "object": "response", "created_at": created, "status": status, "model": model, "output": output, "usage": usage});
    if req["stream"] != json!(true) {
        return Json(response("completed", json!([item]), usage)).into_response();
    }
    let mut events = vec![json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)})];
    let mut added = item.clone();
    if let Turn::Message { .. } = turn {
        added["content"] = json!([]);
        added["status"] = json!("in_progress");
    }
    events.push(json!({"type": "response.output_item.added", "output_index": 0, "item": added}));
    if let Turn::Message { message } = turn {
        events.push(
            json!({"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0, "delta": message}),
        );
    }
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "response": response("completed", json!([item]), usage)}));
    let body: String = events.iter().map(sse).collect();
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn models(State(sim): State<Shared>) -> Response {
    let data: Vec<Value> = ["gpt-5.4", "gpt-5.4-mini", "gpt-5.2", "gpt-5.3-codex"]
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "model-sim"}))
        .collect();
    let _ = sim;
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn recorded(State(sim): State<Shared>) -> Response {
    let r = sim.requests.lock().map(|r| r.clone()).unwrap_or_default();
    Json(Value::Array(r)).into_response()
}

async fn run(cfg: Config) -> Result<(), SimError> {
    let scenarios = load_scenarios(cfg.scenarios_dir.as_deref())?;
    let http = server::bind(cfg.http_addr, "CODEXK8S_MODEL_SIM_HTTP_ADDR").await?;
    tracing::info!(listener = "http", addr = %server::local_addr(&http, "http")?, "listening");
    tracing::info!(scenarios = scenarios.len(), "scenarios loaded");
    let mut shutdown = Shutdown::on_signals();
    let metrics = MetricsBuilder::new("model-sim").build();
    let sim: Shared = Arc::new(Sim { scenarios, api_key: cfg.api_key, requests: Mutex::new(Vec::new()) });
    let api = Router::new()
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/_sim/requests", get(recorded))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY + 1))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "invalid_request_error", "not_found", "Unknown endpoint.") })
        .with_state(sim);
    let router = with_request_metrics(health_router("model-sim", vec![], metrics.clone(), shutdown.token()).merge(api), metrics);
    shutdown.spawn("http", server::serve(http, router, shutdown.token()));
    Ok(shutdown.run_until_stopped(cfg.shutdown_timeout).await?)
}

fn main() -> ExitCode {
    ck8s_service::startup::main_with("model-sim", std::env::args().skip(1).collect(), Config::load, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scenarios_parse_and_bad_ones_are_refused_with_a_reason() {
        let all = load_scenarios(None).unwrap();
        assert!(all.iter().any(|s| s.name == "dev-hello") && all.iter().any(|s| s.name == "default"));
        assert!(parse_scenario("{").unwrap_err().to_string().contains("not a scenario"));
        let no_message = r#"{"name": "x", "turns": [{"tool": "exec_command", "arguments": {"cmd": "ls"}}], "usage": {"input_tokens": 1, "output_tokens": 1}}"#;
        assert!(parse_scenario(no_message).unwrap_err().to_string().contains("must end with a message"));
        let empty = r#"{"name": "x", "turns": [], "usage": {"input_tokens": 1, "output_tokens": 1}}"#;
        assert!(parse_scenario(empty).unwrap_err().to_string().contains("no turns"));
    }

    #[test]
    fn scenarios_are_picked_by_the_text_of_the_request() {
        let all = load_scenarios(None).unwrap();
        let hello = json!({"model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Issue: Say hello"}]}]});
        assert_eq!(pick(&all, &hello).unwrap().name, "dev-hello");
        let other = json!({"model": "m", "instructions": "be brief", "input": "Fix the bug"});
        assert_eq!(pick(&all, &other).unwrap().name, "default");
        // A resumed session: the earlier prompt and its tool calls come first; the new prompt wins
        // and its scenario starts at its first turn.
        let user = |t: &str| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]});
        let out = |id: &str| json!({"type": "function_call_output", "call_id": id, "output": "ok"});
        let resumed = json!({"model": "m", "input": [user("Say hello"), out("c1"), out("c2"), user("<environment_context/>"), user("Review comments: say hello louder"), out("c3")]});
        assert_eq!(pick(&all, &resumed).unwrap().name, "dev-hello-louder");
        assert_eq!(turn_of(&resumed), 1);
        let first = json!({"model": "m", "input": [user("Say hello"), out("c1"), out("c2")]});
        assert_eq!((pick(&all, &first).unwrap().name.as_str(), turn_of(&first)), ("dev-hello", 2));
    }
}
