//! agent-runner's library: the pieces of a run that the binary composes and the tests drive on
//! real git, the real Codex CLI and real services. `workspace` prepares the run's git work tree
//! with the bot token kept out of URLs, arguments and files; `prompt` renders the run's prompt
//! from seeds; `codex` writes Codex's configuration and runs it; `pipeline` takes a run from the
//! work tree to a pull request with its labels moved, review comments answered, the reviewer's
//! review or the learning-mode explanations posted; `session` carries Codex sessions in and out of
//! snapshots; `callbacks` reports to control-plane with the run's token; `sandbox` is the
//! unprivileged user the agent runs as; `host` carries the agent's commands out in a container of
//! its own (Kubernetes).

pub mod callbacks;
pub mod codex;
pub mod config;
pub mod host;
pub mod job;
pub mod pipeline;
pub mod prompt;
pub mod proxy;
pub mod sandbox;
pub mod session;
pub mod workspace;
