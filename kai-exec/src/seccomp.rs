//! The seccomp filter bubblewrap installs before the command runs: system calls that reach kernel
//! attack surface or other processes, or that would undo the namespaces, fail with `ENOSYS`.
//!
//! `ENOSYS` rather than `EPERM`, so programs take their fallbacks: glibc's `posix_spawn` and threads go
//! back from `clone3` (whose flags a filter cannot see) to `clone`, whose flags it can.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

use crate::error::{Error, Result};

/// System calls refused whatever their arguments.
const REFUSED: &[i64] = &[
    // Other processes' memory and the kernel's.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    // Kernel attack surface a command has no use for.
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_fanotify_init,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_vhangup,
    // Memory no limit counts: memory files, and System V shared memory, message queues and semaphores, stay
    // allocated unmapped, out of the address-space limit (POSIX shared memory lives in the bounded
    // /dev/shm instead).
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_msgget,
    libc::SYS_semget,
    // Undoing the namespaces and mounts.
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    // `clone3` passes its flags in memory, out of the filter's sight; `clone` below is checked.
    libc::SYS_clone3,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// `clone` flags that make a namespace; a `clone` with any of them is refused.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// Socket families a command may use: its own loopback network and local sockets. Others are refused,
/// above all `AF_VSOCK`, which no network namespace confines and which reaches a virtual machine's host.
const SOCKET_FAMILIES: &[libc::c_int] = &[libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK];

/// The filter as the bytes of a classic BPF program, the form bubblewrap's `--seccomp` reads.
pub(crate) fn filter_program() -> Result<Vec<u8>> {
    let unavailable = |error: seccompiler::BackendError| Error::Unavailable {
        reason: format!("no seccomp filter for {}: {error}", std::env::consts::ARCH),
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED.iter().map(|&call| (call, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            let condition = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)?;
            SeccompRule::new(vec![condition])
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    rules.insert(libc::SYS_clone, clone_rules);
    let other_family = SOCKET_FAMILIES
        .iter()
        .map(|&family| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family as u64))
        .collect::<Result<Vec<_>, _>>()
        .and_then(SeccompRule::new)
        .map_err(unavailable)?;
    rules.insert(libc::SYS_socket, vec![other_family.clone()]);
    rules.insert(libc::SYS_socketpair, vec![other_family]);
    let architecture = std::env::consts::ARCH.try_into().map_err(unavailable)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        architecture,
    )
    .map_err(unavailable)?;
    let program: BpfProgram = filter.try_into().map_err(unavailable)?;
    let mut bytes = Vec::with_capacity((program.len() + 3) * 8);
    for instruction in x32_refusal().into_iter().chain(program) {
        bytes.extend_from_slice(&instruction.code.to_ne_bytes());
        bytes.push(instruction.jt);
        bytes.push(instruction.jf);
        bytes.extend_from_slice(&instruction.k.to_ne_bytes());
    }
    Ok(bytes)
}

/// On x86-64, instructions that refuse every call of the x32 ABI (numbers from `0x4000_0000`), which
/// share the native architecture's tag and would otherwise pass a filter written for native numbers.
fn x32_refusal() -> Vec<seccompiler::sock_filter> {
    if cfg!(target_arch = "x86_64") {
        let instruction = |code: u32, jt, jf, k| seccompiler::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        vec![
            // Load the call's number (offset 0 of `seccomp_data`).
            instruction(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
            // Below 0x4000_0000, skip the next instruction.
            instruction(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 0, 1, 0x4000_0000),
            instruction(
                libc::BPF_RET | libc::BPF_K,
                0,
                0,
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            ),
        ]
    } else {
        Vec::new()
    }
}

/// `program` in a memory file, close-on-exec and read from its start, for bubblewrap's `--seccomp`.
pub(crate) fn memory_file(program: &[u8]) -> Result<std::fs::File> {
    use std::io::{Seek, Write};
    let made = (|| {
        let mut file = std::fs::File::from(rustix::fs::memfd_create(
            "kai-seccomp",
            rustix::fs::MemfdFlags::CLOEXEC,
        )?);
        file.write_all(program)?;
        file.rewind()?;
        Ok::<_, std::io::Error>(file)
    })();
    made.map_err(|error| Error::io("making the seccomp filter", error))
}
