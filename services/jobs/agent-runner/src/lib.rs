//! agent-runner's library: the pieces of a run that the binary composes and the tests drive on
//! real git and real services. `workspace` prepares the run's git work tree with the bot token
//! kept out of URLs, arguments and files, checks what changed, commits and pushes.

pub mod workspace;
