#!/usr/bin/env bash
# Every system call of DiffKit, Drivers and Images goes through the `Sys` wrappers (DiffKitSystem's
# Sys.swift, and Drivers/System for the driver-only ones), which retry on EINTR and throw a
# SystemError naming the path. This lists each raw call of a common libc syscall name — or of a
# `dk_` C function — left in Sources/DiffKit, Sources/Drivers, Sources/Images and Sources/EngineStores outside Drivers/System, and
# exits 1 if there is one.
# Usage: scripts/check-syscalls.sh [DIR…]   (default: Sources/DiffKit Sources/Drivers Sources/Images)
set -euo pipefail
cd "$(dirname "$0")/.."

dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(Sources/DiffKit Sources/Drivers Sources/Images Sources/EngineStores)

names='open|openat|openat2|close|read|pread|write|pwrite|lseek|fsync|fdatasync|ftruncate|truncate'
names+='|stat|lstat|fstat|fstatat|statfs|fstatfs|access|faccessat'
names+='|mkdir|mkdirat|mkdtemp|rmdir|unlink|unlinkat|rename|renameat|renameat2|link|linkat|symlink|symlinkat'
names+='|readlink|readlinkat|mknod|mknodat|mkfifo|chown|lchown|fchown|fchownat|chmod|fchmod|fchmodat'
names+='|utimes|utimensat|futimens|flock|fcntl|ioctl|pipe|pipe2|dup|dup2|dup3|mount|umount|umount2'
names+='|getxattr|lgetxattr|fgetxattr|setxattr|lsetxattr|fsetxattr|listxattr|llistxattr|flistxattr'
names+='|removexattr|lremovexattr|fremovexattr|copy_file_range|sendfile|splice|opendir|readdir|closedir'

# A call: the name not preceded by `.`, a letter, digit or `_` (so `Sys.open(`, `try open(path)`
# of a local closure named otherwise, and `func open(` are told apart below), then `(`.
# Declarations (`func NAME(`) and comments are left out; `Glibc.NAME(` is a raw call too.
found=$(grep -rnE --include='*.swift' "(^|[^.A-Za-z0-9_])(Glibc\.)?($names)\(|(^|[^A-Za-z0-9_])dk_[a-z0-9_]+\(" "${dirs[@]}" \
    | grep -v '/Drivers/System/' \
    | grep -vE '^[^:]+:[0-9]+:\s*//' \
    | grep -vE "func ($names)[(<]" || true)

# Methods and closures of the project that share a syscall's name (called on a value, or a local
# `open` handed to a closure) are not system calls: list them here as FILE:TEXT to allow.
allowed=(
    'LayerWriter.swift:public func write(changes'
    'NaiveDiff.swift:{ open in try open(path) }'
    'ConformanceSuite.swift:try write(root, '
    'LayerStore.swift:try write(LayerRecord('
    'LayerStore+Import.swift:try write(LayerRecord('
    'LayerStore+Import.swift:try write(record)'
    'LayerStore+Export.swift:return try write(b.directory'
    'LayerStore+Export.swift:return try write(root, [])'
    'LayerStore+Export.swift:try write(root, [parentRoot])'
    'LayerStore+Export.swift:let file = try open(path)'
    'Overlay2.swift:try link(parent)'
    'Overlay2.swift:try? link(id)'
    'IDMappedView.swift:try mount(id: id)'
)
status=0
while IFS= read -r line; do
    [ -n "$line" ] || continue
    ok=0
    for a in "${allowed[@]}"; do
        file=${a%%:*} text=${a#*:}
        [[ $line == */"$file":* && $line == *"$text"* ]] && { ok=1; break; }
    done
    [ $ok = 1 ] && continue
    echo "raw system call (use a Sys wrapper): $line"
    status=1
done <<< "$found"
exit $status
