// See dkdrivers.h: thin wrappers only, every decision lives in Swift.
#define _GNU_SOURCE
#include "dkdrivers.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
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

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* In a child made by fork or clone (no exec follows): close every descriptor but `keep` (-1: none).
   The child has a copy of every descriptor of the process, those other threads are using
   included: a pipe's reader sees its end only when every copy of the write end is closed, so a
   child that waits (the user namespace's, until its maps are written) held up another thread's
   pipe (a btrfs send stream) or another such child's pipe (two at once waited for each other). */
static void child_close_others(int keep) {
    if (keep > 0) syscall(SYS_close_range, 0U, (unsigned)keep - 1, 0U);
    syscall(SYS_close_range, keep < 0 ? 0U : (unsigned)keep + 1, ~0U, 0U);
}

int dk_mount_overlay_from(const char *dir, const char *target, const char *data) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        child_close_others(-1);
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

// ID-mapped mounts (Linux 5.12+): a user namespace holding a mapping, made by a child cloned
// into it that waits on a pipe while the parent writes its maps and opens its ns file; a
// detached copy of a directory's mount made ID-mapped through such a namespace; and an overlay
// mounted with the creator's filesystem IDs set to a mapped ID, so overlay's own writes to an
// ID-mapped upper layer (work dir, copy-up) have an ID the mapping can store.
#include <sched.h>
#include <signal.h>
#include <linux/capability.h>
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
struct mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif

static int write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int e = errno;
    close(fd);
    if (w != (ssize_t)n) { errno = w < 0 ? e : EIO; return -1; }
    return 0;
}

int dk_userns_open(const char *uid_map, const char *gid_map) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return -1;
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0) { int e = errno; close(p[0]); close(p[1]); errno = e; return -1; }
    if (pid == 0) {
        char c;
        child_close_others(p[0]);
        while (read(p[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(p[0]);
    char path[64];
    int fd = -1, e = 0;
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_text(path, uid_map) != 0) { e = errno; goto done; }
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    if (write_text(path, gid_map) != 0) { e = errno; goto done; }
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) e = errno;
done:
    close(p[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    if (fd < 0) errno = e;
    return fd;
}

int dk_idmapped_tree(const char *path, int userns_fd) {
    int m = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (m < 0) return -1;
    struct mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = MOUNT_ATTR_IDMAP;
    a.userns_fd = (uint64_t)userns_fd;
    if (syscall(SYS_mount_setattr, m, "", AT_EMPTY_PATH, &a, sizeof a) != 0) {
        int e = errno;
        close(m);
        errno = e;
        return -1;
    }
    return m;
}

int dk_mount_overlay_mapped(const char *dir, const char *target, const char *data, uint32_t fsuid, uint32_t fsgid) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        child_close_others(-1);
        if (chdir(dir) != 0) _exit(errno & 0xff);
        syscall(SYS_setfsgid, fsgid);
        syscall(SYS_setfsuid, fsuid);
        // setfsuid dropped the file capabilities from the effective set: raise them again
        // (they stay permitted), so overlay's copy-ups are not refused by permissions.
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2];
        if (syscall(SYS_capget, &h, d) != 0) _exit(errno & 0xff);
        d[0].effective = d[0].permitted;
        d[1].effective = d[1].permitted;
        if (syscall(SYS_capset, &h, d) != 0) _exit(errno & 0xff);
        _exit(mount("overlay", target, "overlay", 0, data) == 0 ? 0 : (errno & 0xff));
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return errno;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
}

int dk_mount_id(const char *path, uint64_t *id) {
    struct statx sx;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) != 0) return -1;
    if (!(sx.stx_mask & STATX_MNT_ID)) { errno = ENOSYS; return -1; }
    *id = sx.stx_mnt_id;
    return 0;
}

// btrfs send.
#include <stdlib.h>
int dk_btrfs_snapshot_readonly(int srcfd, int dirfd, const char *name) {
    struct btrfs_ioctl_vol_args_v2 a;
    memset(&a, 0, sizeof a);
    a.fd = srcfd;
    a.flags = BTRFS_SUBVOL_RDONLY;
    vol_name(a.name, sizeof a.name, name);
    return ioctl(dirfd, BTRFS_IOC_SNAP_CREATE_V2, &a);
}
int dk_btrfs_send(int fd, int out_fd, uint64_t parent_root, uint64_t flags) {
    struct btrfs_ioctl_send_args a;
    memset(&a, 0, sizeof a);
    a.send_fd = out_fd;
    a.parent_root = parent_root;
    a.flags = flags;
    return ioctl(fd, BTRFS_IOC_SEND, &a);
}
int dk_btrfs_subvol_info(int fd, struct dk_btrfs_subvol *out) {
    struct btrfs_ioctl_get_subvol_info_args a;
    memset(&a, 0, sizeof a);
    // It may return 1 (the tree search's "not an exact key") on success.
    if (ioctl(fd, BTRFS_IOC_GET_SUBVOL_INFO, &a) < 0) return -1;
    out->id = a.treeid;
    out->ctransid = a.ctransid;
    out->otransid = a.otransid;
    out->flags = a.flags;
    memcpy(out->uuid, a.uuid, 16);
    memcpy(out->parent_uuid, a.parent_uuid, 16);
    return 0;
}
int dk_renameat2(int olddirfd, const char *oldname, int newdirfd, const char *newname, unsigned flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldname, newdirfd, newname, flags);
}
int dk_syncfs(int fd) { return syncfs(fd); }
long dk_btrfs_ino_paths(int fd, uint64_t ino, char *out, size_t size) {
    struct btrfs_data_container *c = malloc(size);
    if (!c) return -1;
    struct btrfs_ioctl_ino_path_args a;
    memset(&a, 0, sizeof a);
    a.inum = ino;
    a.size = size;
    a.fspath = (uint64_t)(uintptr_t)c;
    if (ioctl(fd, BTRFS_IOC_INO_PATHS, &a) != 0) { int e = errno; free(c); errno = e; return -1; }
    if (c->elem_missed) { free(c); errno = EOVERFLOW; return -1; }
    // Each value is the offset of a NUL-terminated path from the start of the value array.
    size_t used = 0;
    for (uint32_t i = 0; i < c->elem_cnt; i++) {
        const char *s = (const char *)c->val + c->val[i];
        size_t n = strlen(s) + 1;
        if (used + n > size) { free(c); errno = EOVERFLOW; return -1; }
        memcpy(out + used, s, n);
        used += n;
    }
    free(c);
    return (long)used;
}
