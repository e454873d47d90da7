"""Generates ``_ffi.py``, the pre-parsed cffi declarations for libc and libseccomp that ``pallet.kernel.linux`` uses.

cffi's out-of-line ABI mode: parsing C declarations at import costs ~25 ms (pycparser), the
generated module loads in ~1 ms, which matters for container start latency. Run
``python3 -m pallet.kernel.ffi_build`` after changing ``CDEF``; a test checks it is current.
"""

from __future__ import annotations

from pathlib import Path

CDEF = """
int unshare(int flags);
int setns(int fd, int nstype);
int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
int umount2(const char *target, int flags);
int syncfs(int fd);
long syscall(long number, ...);
int sethostname(const char *name, size_t len);
int setdomainname(const char *name, size_t len);
int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);

typedef struct { uint32_t version; int pid; } cap_header;
typedef struct { uint32_t effective; uint32_t permitted; uint32_t inheritable; } cap_data;
int capget(cap_header *header, cap_data *data);
int capset(cap_header *header, const cap_data *data);

int grantpt(int fd);
int unlockpt(int fd);
int ptsname_r(int fd, char *buf, size_t buflen);

typedef void *scmp_filter_ctx;
struct scmp_arg_cmp { unsigned int arg; int op; uint64_t datum_a; uint64_t datum_b; };
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_load(const scmp_filter_ctx ctx);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
struct scmp_version { unsigned int major; unsigned int minor; unsigned int micro; };
const struct scmp_version *seccomp_version(void);

struct sock_filter { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; };
struct sock_fprog { unsigned short len; struct sock_filter *filter; };

typedef struct __dirstream DIR;
struct dirent { uint64_t d_ino; int64_t d_off; unsigned short d_reclen; unsigned char d_type; char d_name[256]; };
DIR *opendir(const char *name);
struct dirent *readdir(DIR *dirp);
int closedir(DIR *dirp);

struct landlock_ruleset_attr { uint64_t handled_access_fs; uint64_t handled_access_net; };
struct landlock_net_port_attr { uint64_t allowed_access; uint64_t port; };
"""

# The kernel declares this one packed (12 bytes); cffi takes packing per cdef call.
PACKED_CDEF = """
struct landlock_path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; };
"""

TARGET = Path(__file__).with_name("_ffi.py")


def build(target: Path = TARGET) -> None:
    from cffi import FFI

    builder = FFI()
    builder.cdef(CDEF)
    builder.cdef(PACKED_CDEF, packed=True)
    builder.set_source("pallet.kernel._ffi", None)
    builder.emit_python_code(str(target))


if __name__ == "__main__":
    build()
