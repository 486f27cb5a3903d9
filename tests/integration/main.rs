//! tocsin's integration tests: one binary, through HTTP and the real binary.

mod common;

mod access;
mod api;
mod architecture;
mod backup;
mod bad_input;
mod cli;
mod connections;
mod console;
mod crash;
mod deploy_files;
mod discord;
mod flapping;
mod heartbeats;
mod intake;
mod log_pages;
mod maintenance;
mod metrics;
mod oncall;
mod overload;
mod pacing;
mod paging;
mod phone;
mod postgres;
mod reopen;
mod reports;
mod restart;
mod retention;
mod routing;
mod runbooks;
mod senders;
mod sign_in;
mod slack;
mod specs;
mod stakeholders;
