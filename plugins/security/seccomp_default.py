"""pallet's own default seccomp profile (Docker's JSON format), built from syscall groups listed by purpose.

The policy: deny by default with EPERM; allow what ordinary programs use; allow
administrative calls only when the container holds the capability that the kernel would
check anyway (so --cap-add SYS_ADMIN also opens mount/unshare); never allow calls that
change the host for everyone (kexec, swap, modules without CAP_SYS_MODULE, keyrings).
Its decisions match Docker's default for the calls tested in tests/security/test_seccomp.py.
"""

from __future__ import annotations

# Groups of calls any program may make. Names absent on an architecture are skipped by
# libseccomp, so 32-bit and 64-bit spellings sit side by side.
ALWAYS_ALLOWED: dict[str, str] = {
    "files": """
        access faccessat faccessat2 open openat openat2 creat close close_range read readv pread64
        preadv preadv2 write writev pwrite64 pwritev pwritev2 lseek _llseek dup dup2 dup3 fcntl fcntl64
        flock fsync fdatasync sync syncfs sync_file_range readahead fadvise64 fadvise64_64 fallocate
        truncate truncate64 ftruncate ftruncate64 copy_file_range sendfile sendfile64 splice tee vmsplice
        stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64 fstatfs
        fstatfs64 getdents getdents64 getcwd chdir fchdir mkdir mkdirat mknod mknodat rmdir rename
        renameat renameat2 link linkat symlink symlinkat unlink unlinkat readlink readlinkat umask
        chmod fchmod fchmodat fchmodat2 chown chown32 fchown fchown32 fchownat lchown lchown32
        utime utimes utimensat utimensat_time64 futimesat name_to_handle_at cachestat
        ioctl
    """,
    "xattrs": """
        getxattr lgetxattr fgetxattr getxattrat setxattr lsetxattr fsetxattr setxattrat listxattr
        llistxattr flistxattr listxattrat removexattr lremovexattr fremovexattr removexattrat
    """,
    "polling": """
        select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create epoll_create1
        epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2 eventfd eventfd2
        inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark signalfd signalfd4
        timerfd_create timerfd_settime timerfd_settime64 timerfd_gettime timerfd_gettime64
        pipe pipe2
    """,
    "async-io": """
        io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
    """,
    "memory": """
        brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 mlockall munlock
        munlockall remap_file_pages memfd_create memfd_secret membarrier pkey_alloc pkey_free
        pkey_mprotect map_shadow_stack mseal process_mrelease
    """,
    "processes": """
        execve execveat fork vfork exit exit_group wait4 waitid waitpid getpid getppid gettid getpgid
        getpgrp getsid setsid setpgid prctl set_tid_address set_robust_list
        get_robust_list rseq restart_syscall seccomp getrusage getrlimit ugetrlimit setrlimit prlimit64
        getpriority setpriority ioprio_get ioprio_set getcpu capget capset uname sysinfo times
        getrandom pidfd_open pidfd_send_signal get_thread_area set_thread_area uretprobe riscv_hwprobe
    """,
    "scheduling": """
        sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_setparam
        sched_getscheduler sched_setscheduler sched_getattr sched_setattr sched_get_priority_max
        sched_get_priority_min sched_rr_get_interval sched_rr_get_interval_time64
    """,
    "identity": """
        getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32
        getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid
        setreuid32 setregid setregid32 setresuid setresuid32 setresgid setresgid32 setfsuid
        setfsuid32 setfsgid setfsgid32 setgroups setgroups32
    """,
    "signals": """
        kill tkill tgkill rt_sigaction rt_sigprocmask rt_sigpending rt_sigsuspend rt_sigtimedwait
        rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo rt_sigreturn sigreturn sigprocmask
        sigaltstack pause alarm
    """,
    "time": """
        time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
        clock_nanosleep clock_nanosleep_time64 nanosleep getitimer setitimer timer_create
        timer_delete timer_gettime timer_gettime64 timer_settime timer_settime64 timer_getoverrun
        adjtimex clock_adjtime clock_adjtime64
    """,
    "futexes": """
        futex futex_time64 futex_waitv futex_wait futex_wake futex_requeue
    """,
    "networking": """
        socketpair bind connect listen accept accept4 getsockname getpeername getsockopt setsockopt
        shutdown send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64 socketcall
    """,
    "sysv-and-posix-ipc": """
        ipc shmget shmat shmdt shmctl semget semop semtimedop semtimedop_time64 semctl msgget msgsnd
        msgrcv msgctl mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
        mq_timedreceive_time64 mq_notify mq_getsetattr
    """,
    "sandboxing": """
        landlock_create_ruleset landlock_add_rule landlock_restrict_self
    """,
    "mount-introspection": """
        listmount statmount
    """,
}

# Calls the kernel guards with a capability: allowed when the container holds it.
ALLOWED_WITH_CAPABILITY: dict[str, str] = {
    "CAP_SYS_ADMIN": """
        mount umount umount2 fsopen fsconfig fsmount fspick move_mount open_tree mount_setattr
        unshare setns clone clone3 sethostname setdomainname quotactl quotactl_fd lookup_dcookie
        fanotify_init bpf perf_event_open syslog lsm_get_self_attr lsm_set_self_attr lsm_list_modules
    """,
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "init_module finit_module delete_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "ptrace process_vm_readv process_vm_writev process_madvise kcmp pidfd_getfd",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "mbind get_mempolicy set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
}

# Calls that exist only on some architectures (Go architecture names, as Docker's profiles use).
ARCH_SPECIFIC: dict[tuple[str, ...], str] = {
    ("amd64", "x32"): "arch_prctl",
    ("amd64", "x32", "x86"): "modify_ldt",
    ("arm", "arm64"): "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
    ("ppc64le",): "sync_file_range2 swapcontext",
    ("s390", "s390x"): "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    ("riscv64",): "riscv_flush_icache",
}

# Namespace-creating clone flags: NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
# personality(2) values programs legitimately use: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE
# (alone and with UNAME26) and the 0xffffffff query.
SAFE_PERSONALITIES = (0x0, 0x0008, 0x0020000, 0x0020008, 0xFFFFFFFF)
AF_ALG, AF_VSOCK = 38, 40
EPERM, ENOSYS = 1, 38

# Native architecture -> the sub-architectures whose calls a container may also make.
ARCH_MAP = {
    "SCMP_ARCH_X86_64": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "SCMP_ARCH_AARCH64": ["SCMP_ARCH_ARM"],
    "SCMP_ARCH_MIPS64": ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    "SCMP_ARCH_MIPS64N32": ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    "SCMP_ARCH_MIPSEL64": ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    "SCMP_ARCH_MIPSEL64N32": ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    "SCMP_ARCH_PPC64LE": ["SCMP_ARCH_PPC64", "SCMP_ARCH_PPC"],
    "SCMP_ARCH_S390X": ["SCMP_ARCH_S390"],
    "SCMP_ARCH_RISCV64": [],
    "SCMP_ARCH_LOONGARCH64": [],
}


def _names(text: str) -> list[str]:
    return sorted(set(text.split()))


def _arg(index: int, value: int, op: str) -> dict:
    return {"index": index, "value": value, "op": op}


def default_profile() -> dict:
    """pallet's default profile as a Docker-format dict (what ``pallet security seccomp default`` prints)."""
    allow = "SCMP_ACT_ALLOW"
    rules: list[dict] = [{"comment": f"always allowed: {group}", "names": _names(text), "action": allow}
                         for group, text in ALWAYS_ALLOWED.items()]
    # ptrace cannot bypass seccomp since Linux 4.8, so from there on it is safe without CAP_SYS_PTRACE.
    rules.append({"comment": "ptrace respects seccomp since 4.8", "names": _names("ptrace process_vm_readv process_vm_writev"),
                  "action": allow, "includes": {"minKernel": "4.8"}})
    rules += [{"comment": f"sockets except AF_ALG and AF_VSOCK ({op})", "names": ["socket"], "action": allow,
               "args": [_arg(0, value, op)]}
              for value, op in ((AF_ALG, "SCMP_CMP_LT"), (AF_ALG + 1, "SCMP_CMP_EQ"), (AF_VSOCK, "SCMP_CMP_GT"))]
    rules += [{"comment": "harmless personalities", "names": ["personality"], "action": allow,
               "args": [_arg(0, value, "SCMP_CMP_EQ")]} for value in SAFE_PERSONALITIES]
    rules += [{"comment": f"architecture specific: {', '.join(arches)}", "names": _names(text), "action": allow,
               "includes": {"arches": list(arches)}} for arches, text in ARCH_SPECIFIC.items()]
    rules += [{"comment": f"needs {cap}", "names": _names(text), "action": allow, "includes": {"caps": [cap]}}
              for cap, text in ALLOWED_WITH_CAPABILITY.items()]
    no_admin = {"caps": ["CAP_SYS_ADMIN"]}
    rules += [
        {"comment": "threads and processes, but no new namespaces without CAP_SYS_ADMIN", "names": ["clone"],
         "action": allow, "args": [_arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ") | {"valueTwo": 0}],
         "excludes": no_admin | {"arches": ["s390", "s390x"]}},
        {"comment": "s390 passes clone flags second", "names": ["clone"], "action": allow,
         "args": [_arg(1, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ") | {"valueTwo": 0}],
         "includes": {"arches": ["s390", "s390x"]}, "excludes": no_admin},
        # clone3 passes its flags in memory that seccomp cannot inspect; ENOSYS makes libc fall back to clone.
        {"comment": "clone3 flags are not inspectable: ENOSYS so libc falls back to clone", "names": ["clone3"],
         "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS, "excludes": no_admin},
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [{"architecture": arch, "subArchitectures": subs} for arch, subs in ARCH_MAP.items()],
        "syscalls": rules,
    }
