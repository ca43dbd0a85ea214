//! SIGINT and SIGTERM: stop what runs, let each step clean up, exit 130 or 143.
//!
//! Every child the [`crate::exec::Runner`] spawns gets a process group of its
//! own, so a Ctrl-C in the terminal reaches only the xtask, which then stops its
//! children in an order that lets podman clean up after itself:
//!
//! 1. container processes below a child (a `RUN` step, under qemu or not: they
//!    are the descendants in a session of their own) are killed, again and
//!    again while the child runs, since the other platform's job of a
//!    multi-platform build starts its `RUN` later; podman sees its steps fail
//!    and removes its working containers, as for any failed step. (Signalling
//!    podman instead leaves the `RUN` process running, orphaned, and the
//!    working container behind.)
//! 2. a child without container processes (`podman manifest push`), or one
//!    still running after a grace period, gets SIGTERM, then SIGKILL.
//! 3. the xtask is a child subreaper, so container processes orphaned anyway
//!    become its own descendants, and are killed too.
//!
//! The code waiting on the child sees it fail with [`Interrupted`], starts
//! nothing new, and each step's error path removes what the run made (the
//! temporary list, leftover build containers). Tagging is never cut in half: a
//! signal that arrives while lists are being tagged takes effect afterwards.
//! A second signal exits at once.

use std::{
    fmt,
    sync::{
        atomic::{AtomicI32, AtomicUsize, Ordering},
        Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGKILL, SIGTERM};

/// The signal received, 0 until then.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Children running now (their pids are also their process group ids).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// How many [`Deferred`] sections are open.
static DEFERRED: AtomicUsize = AtomicUsize::new(0);

/// How long podman gets to notice its step failed and clean up.
const GRACE: Duration = Duration::from_secs(20);
const TERM_GRACE: Duration = Duration::from_secs(10);

/// The error a step returns when it stopped because of a signal.
#[derive(Debug, Clone, Copy)]
pub struct Interrupted(pub i32);

impl Interrupted {
    pub fn exit_code(self) -> u8 {
        u8::try_from(128 + self.0).unwrap_or(130)
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "interrupted by {}", signal_name(self.0))
    }
}

impl std::error::Error for Interrupted {}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Handles SIGINT and SIGTERM from now on, in a thread of their own.
pub fn install() -> Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) has no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the SIGINT/SIGTERM handler")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                on_signal(signal);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// The signal received so far, if any.
pub fn received() -> Option<Interrupted> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted(signal)),
    }
}

/// Fails with [`Interrupted`] once a signal has arrived: call before starting work.
pub fn check() -> Result<()> {
    match received() {
        Some(interrupted) => Err(interrupted.into()),
        None => Ok(()),
    }
}

/// While one of these lives, a signal is recorded but stops nothing: for
/// short steps that must not be cut in half (moving tags onto a new list).
pub struct Deferred(());

impl Deferred {
    pub fn new() -> Deferred {
        DEFERRED.fetch_add(1, Ordering::SeqCst);
        Deferred(())
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        DEFERRED.fetch_sub(1, Ordering::SeqCst);
    }
}

fn on_signal(signal: i32) {
    if SIGNAL
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        eprintln!(
            "\nxtask: {} again: exiting now, without cleaning up; \
             `{} clean-build-cache` removes what is left",
            signal_name(signal),
            crate::project::command_name()
        );
        std::process::exit(128 + signal);
    }
    eprintln!(
        "\nxtask: {} received: stopping podman and removing what this run made \
         (send it again to exit at once)",
        signal_name(signal)
    );
    if DEFERRED.load(Ordering::SeqCst) > 0 {
        eprintln!("xtask: finishing the tagging in progress first, so no tag is left half-moved");
        return;
    }
    let children = CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    for child in children {
        stop(child);
    }
}

/// Registers a child that was just spawned. Children spawned after a signal
/// are not stopped: work checks [`check`] before it starts, so they are the
/// cleanup.
pub fn register(pids: &[u32]) {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend_from_slice(pids);
}

pub fn unregister(pids: &[u32]) {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .retain(|pid| !pids.contains(pid));
}

fn still_running(pid: u32) -> bool {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(&pid)
}

/// Waits, boundedly, for the runner to collect `pid`.
fn wait_for(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while still_running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
    true
}

fn stop(child: u32) {
    let session = own_session();
    let deadline = Instant::now() + GRACE;
    let mut saw_containers = false;
    loop {
        let containers = container_processes(child, session);
        saw_containers |= !containers.is_empty();
        for pid in containers {
            send(pid, SIGKILL);
        }
        if !still_running(child) {
            break;
        }
        if !saw_containers || Instant::now() >= deadline {
            // The child's process group: itself and anything it started since.
            send_group(child, SIGTERM);
            if !wait_for(child, TERM_GRACE) {
                send_group(child, SIGKILL);
            }
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    // Orphaned container processes are ours now (subreaper).
    for pid in container_processes(std::process::id(), session) {
        send(pid, SIGKILL);
    }
}

/// Kills `pid`'s process group at once (a query that will never answer).
pub fn kill_group(pid: u32) {
    send_group(pid, SIGKILL);
}

/// Stops a child whose work can no longer finish (its builder stopped
/// answering): SIGTERM, so it can tidy what it can; after a grace period
/// SIGKILL to it and to everything below it, which would otherwise wait on
/// the silent machine forever.
pub fn give_up(child: u32) {
    // Collected meanwhile: its pid may be another's by now.
    if !still_running(child) {
        return;
    }
    // Taken before: once the child is gone, what it started is ours
    // (subreaper) and no longer below it.
    let mut below = descendants(child, &process_table());
    send_group(child, SIGTERM);
    if wait_for(child, TERM_GRACE) {
        return;
    }
    below.extend(descendants(child, &process_table()));
    send_group(child, SIGKILL);
    for pid in below {
        send_group(pid, SIGKILL);
        send(pid, SIGKILL);
    }
}

/// Descendants of `root` that live in another session than ours: processes
/// of containers (the runtime starts each in a session of its own).
fn container_processes(root: u32, session: u32) -> Vec<u32> {
    let table = process_table();
    descendants(root, &table)
        .into_iter()
        .filter(|pid| {
            table
                .iter()
                .any(|process| process.pid == *pid && process.session != session)
        })
        .collect()
}

fn own_session() -> u32 {
    // SAFETY: getsid(0) has no memory-safety preconditions.
    let session = unsafe { libc::getsid(0) };
    u32::try_from(session).unwrap_or(0)
}

fn send(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn send_group(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: as above; a negative pid names the process group.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Process {
    pid: u32,
    parent: u32,
    session: u32,
}

/// Every process, from /proc.
fn process_table() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            parse_stat(
                pid,
                &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
            )
        })
        .collect()
}

/// A /proc/PID/stat line: after the parenthesised command name (which may
/// itself contain spaces and parentheses) come state, ppid, pgrp, session.
fn parse_stat(pid: u32, stat: &str) -> Option<Process> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(Process {
        pid,
        parent: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
    })
}

/// Every process below `root` in the tree.
fn descendants(root: u32, table: &[Process]) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    // A process tree has no cycles, but /proc is read while it changes: bound
    // the walk by the number of processes.
    for _ in 0..=table.len() {
        let Some(parent) = frontier.pop() else { break };
        for process in table {
            if process.parent == parent && process.pid != root && !found.contains(&process.pid) {
                found.push(process.pid);
                frontier.push(process.pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_after_the_command_name() {
        assert_eq!(
            parse_stat(4242, "4242 (podman) S 4200 4242 4100 0 -1"),
            Some(Process {
                pid: 4242,
                parent: 4200,
                session: 4100
            })
        );
        assert_eq!(
            parse_stat(77, "77 (a) b (c)) R 12 77 70 0").map(|process| process.parent),
            Some(12),
            "a name with spaces and parentheses"
        );
        assert_eq!(parse_stat(1, "garbage"), None);
    }

    fn process(pid: u32, parent: u32) -> Process {
        Process {
            pid,
            parent,
            session: 1,
        }
    }

    #[test]
    fn descendants_are_the_whole_subtree_and_nothing_else() {
        // 10 -> 11 -> 12 -> 13; 10 -> 14; 20 is unrelated, 1 is the root's parent.
        let table = [
            process(10, 1),
            process(11, 10),
            process(12, 11),
            process(13, 12),
            process(14, 10),
            process(20, 1),
            process(21, 20),
        ];
        let mut found = descendants(10, &table);
        found.sort_unstable();
        assert_eq!(found, [11, 12, 13, 14]);
        assert!(descendants(13, &table).is_empty());
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(Interrupted(SIGINT).exit_code(), 130);
        assert_eq!(Interrupted(SIGTERM).exit_code(), 143);
        assert_eq!(Interrupted(SIGTERM).to_string(), "interrupted by SIGTERM");
    }
}
