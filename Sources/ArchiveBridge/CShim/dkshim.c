// See dkshim.h: thin wrappers only, every decision lives in Swift.
#define _GNU_SOURCE
#include "dkshim.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

long dk_getdents64(int fd, void *buf, size_t len) { return syscall(SYS_getdents64, fd, buf, len); }

ssize_t dk_lgetxattr(const char *p, const char *n, void *v, size_t s) { return lgetxattr(p, n, v, s); }
ssize_t dk_fgetxattr(int fd, const char *n, void *v, size_t s) { return fgetxattr(fd, n, v, s); }
ssize_t dk_llistxattr(const char *p, char *l, size_t s) { return llistxattr(p, l, s); }
ssize_t dk_flistxattr(int fd, char *l, size_t s) { return flistxattr(fd, l, s); }
int dk_lsetxattr(const char *p, const char *n, const void *v, size_t s) { return lsetxattr(p, n, v, s, 0); }
int dk_fsetxattr(int fd, const char *n, const void *v, size_t s) { return fsetxattr(fd, n, v, s, 0); }

uint64_t dk_makedev(uint32_t ma, uint32_t mi) { return makedev(ma, mi); }
uint32_t dk_major(uint64_t d) { return major(d); }
uint32_t dk_minor(uint64_t d) { return minor(d); }

int dk_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
#ifdef SYS_openat2
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
#else
    errno = ENOSYS;
    return -1;
#endif
}
uint64_t dk_resolve_in_root(void) { return RESOLVE_IN_ROOT; }
uint64_t dk_resolve_no_magiclinks(void) { return RESOLVE_NO_MAGICLINKS; }

ssize_t dk_copy_file_range(int in, int out, size_t len) { return copy_file_range(in, NULL, out, NULL, len, 0); }
int dk_ficlone(int dst, int src) { return ioctl(dst, FICLONE, src); }
int dk_o_path(void) { return O_PATH; }
int dk_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }
int dk_mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev) { return mknodat(dirfd, path, mode, dev); }
int dk_statfs_type(int fd, int64_t *type) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    *type = (int64_t)s.f_type;
    return 0;
}

#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
ssize_t dk_listxattrat(int dirfd, const char *name, char *list, size_t size) {
    return syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, list, size);
}

#include <linux/dqblk_xfs.h>
#include <linux/mount.h>
#include <linux/quota.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>

#ifndef SYS_fsopen
#define SYS_move_mount 429
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#endif
int dk_fsopen(const char *fstype) { return (int)syscall(SYS_fsopen, fstype, 1 /* FSOPEN_CLOEXEC */); }
int dk_fsconfig_string(int fd, const char *k, const char *v) { return (int)syscall(SYS_fsconfig, fd, FSCONFIG_SET_STRING, k, v, 0); }
int dk_fsconfig_flag(int fd, const char *k) { return (int)syscall(SYS_fsconfig, fd, FSCONFIG_SET_FLAG, k, NULL, 0); }
int dk_fsconfig_create(int fd) { return (int)syscall(SYS_fsconfig, fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0); }
int dk_fsmount(int fd) { return (int)syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, 0); }
int dk_move_mount(int mfd, const char *target) {
    return (int)syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
}

int dk_mount_overlay_from(const char *dir, const char *target, const char *data) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(errno & 0xff);
        _exit(mount("overlay", target, "overlay", 0, data) == 0 ? 0 : (errno & 0xff));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return errno;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
}

int dk_get_project(int fd, uint32_t *id) {
    struct fsxattr fsx;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fsx) != 0) return -1;
    *id = fsx.fsx_projid;
    return 0;
}
int dk_set_project(int fd, uint32_t id) {
    struct fsxattr fsx;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fsx) != 0) return -1;
    fsx.fsx_projid = id;
    fsx.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    return ioctl(fd, FS_IOC_FSSETXATTR, &fsx);
}

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443
#endif
static int quota_call(int fsfd, const char *device, int cmd, uint32_t id, void *addr) {
    int r = (int)syscall(SYS_quotactl_fd, fsfd, QCMD(cmd, PRJQUOTA), id, addr);
    if (r != 0 && errno == ENOSYS && device != NULL) r = (int)syscall(SYS_quotactl, QCMD(cmd, PRJQUOTA), device, id, addr);
    return r;
}
int dk_project_set_limit(int fsfd, const char *device, uint32_t id, uint64_t bytes) {
    struct fs_disk_quota d;
    memset(&d, 0, sizeof d);
    d.d_version = FS_DQUOT_VERSION;
    d.d_id = id;
    d.d_flags = FS_PROJ_QUOTA;
    d.d_fieldmask = FS_DQ_BHARD | FS_DQ_BSOFT;
    d.d_blk_hardlimit = bytes / 512;
    d.d_blk_softlimit = bytes / 512;
    return quota_call(fsfd, device, Q_XSETQLIM, id, &d);
}
int dk_project_get(int fsfd, const char *device, uint32_t id, uint64_t *limit, uint64_t *used) {
    struct fs_disk_quota d;
    memset(&d, 0, sizeof d);
    if (quota_call(fsfd, device, Q_XGETQUOTA, id, &d) != 0) return -1;
    *limit = d.d_blk_hardlimit * 512;
    *used = d.d_bcount * 512;
    return 0;
}

#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#if __has_include(<btrfs/version.h>)
#include <btrfs/version.h>
#endif

static void vol_name(char *dst, size_t cap, const char *name) {
    memset(dst, 0, cap);
    strncpy(dst, name, cap - 1);
}
int dk_btrfs_subvol_create(int dirfd, const char *name) {
    struct btrfs_ioctl_vol_args a;
    memset(&a, 0, sizeof a);
    vol_name(a.name, sizeof a.name, name);
    return ioctl(dirfd, BTRFS_IOC_SUBVOL_CREATE, &a);
}
int dk_btrfs_snapshot(int srcfd, int dirfd, const char *name) {
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    a.fd = srcfd;
    vol_name(a.name, sizeof a.name, name);
    return ioctl(dirfd, BTRFS_IOC_SNAP_CREATE_V2, &a);
}
int dk_btrfs_subvol_destroy(int dirfd, const char *name) {
    struct btrfs_ioctl_vol_args a;
    memset(&a, 0, sizeof a);
    vol_name(a.name, sizeof a.name, name);
    return ioctl(dirfd, BTRFS_IOC_SNAP_DESTROY, &a);
}
int dk_btrfs_quota_ctl(int fd, int enable) {
    struct btrfs_ioctl_quota_ctl_args a;
    memset(&a, 0, sizeof a);
    a.cmd = enable ? BTRFS_QUOTA_CTL_ENABLE : BTRFS_QUOTA_CTL_DISABLE;
    return ioctl(fd, BTRFS_IOC_QUOTA_CTL, &a);
}
int dk_btrfs_quota_rescan_wait(int fd) {
    struct btrfs_ioctl_quota_rescan_args a;
    memset(&a, 0, sizeof a);
    if (ioctl(fd, BTRFS_IOC_QUOTA_RESCAN, &a) != 0 && errno != EINPROGRESS) return -1;
    return ioctl(fd, BTRFS_IOC_QUOTA_RESCAN_WAIT, NULL);
}
int dk_btrfs_quota_status(int fd) {
    struct btrfs_ioctl_search_args a;
    memset(&a, 0, sizeof a);
    a.key.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
    a.key.min_type = BTRFS_QGROUP_STATUS_KEY;
    a.key.max_type = BTRFS_QGROUP_STATUS_KEY;
    a.key.max_objectid = (__u64)-1;
    a.key.max_offset = (__u64)-1;
    a.key.max_transid = (__u64)-1;
    a.key.nr_items = 4096;
    if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &a) != 0) return errno == ENOENT ? 0 : -1;
    if (a.key.nr_items == 0) return 0;
    struct btrfs_ioctl_search_header *sh = (struct btrfs_ioctl_search_header *)a.buf;
    if (sh->type != BTRFS_QGROUP_STATUS_KEY) return 0;
    struct btrfs_qgroup_status_item *st = (struct btrfs_qgroup_status_item *)(a.buf + sizeof *sh);
    return (st->flags & BTRFS_QGROUP_STATUS_FLAG_ON) ? 1 : 0;
}
int dk_btrfs_qgroup_limit(int fd, uint64_t max_referenced) {
    struct btrfs_ioctl_qgroup_limit_args a;
    memset(&a, 0, sizeof a);
    a.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    a.lim.max_rfer = max_referenced;
    return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &a);
}
int dk_btrfs_qgroup_destroy(int fd, uint64_t qgroupid) {
    struct btrfs_ioctl_qgroup_create_args a;
    memset(&a, 0, sizeof a);
    a.create = 0;
    a.qgroupid = qgroupid;
    return ioctl(fd, BTRFS_IOC_QGROUP_CREATE, &a);
}
int dk_btrfs_subvol_id(int fd, uint64_t *id) {
    struct btrfs_ioctl_ino_lookup_args a;
    memset(&a, 0, sizeof a);
    a.objectid = BTRFS_FIRST_FREE_OBJECTID;
    if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &a) != 0) return -1;
    *id = a.treeid;
    return 0;
}
const char *dk_btrfs_build_version(void) {
#ifdef BTRFS_BUILD_VERSION
    return BTRFS_BUILD_VERSION;
#else
    return "";
#endif
}
int dk_btrfs_lib_version(void) {
#ifdef BTRFS_LIB_VERSION
    return BTRFS_LIB_VERSION;
#else
    return -1;
#endif
}

/* CRC-32C (Castagnoli) of file contents recorded at import (tar-split): the SSE4.2 instruction
 * where the CPU has it, a table otherwise. */
#if defined(__x86_64__)
#include <nmmintrin.h>
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    while (n >= 8) { c = _mm_crc32_u64(c, *(const uint64_t *)p); p += 8; n -= 8; }
    while (n) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    return (uint32_t)c;
}
#endif

static uint32_t crc32c_table[256];
static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
}

uint32_t dk_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_hw(crc, p, n);
#endif
    if (!crc32c_table[1]) crc32c_init();
    while (n--) crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

int dk_memfd(const char *name) { return (int)syscall(SYS_memfd_create, name, 1u /* MFD_CLOEXEC */); }

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DK_TSAN 1
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#endif
#endif

void dk_tsan_acquire(const void *addr) {
#ifdef DK_TSAN
    __tsan_acquire((void *)addr);
#else
    (void)addr;
#endif
}

void dk_tsan_release(const void *addr) {
#ifdef DK_TSAN
    __tsan_release((void *)addr);
#else
    (void)addr;
#endif
}
