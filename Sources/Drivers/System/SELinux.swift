// SELinux labels for layer roots (libselinux), where SELinux is enabled.
import CSELinux
import DiffKitSystem

#if canImport(Glibc)
import Glibc
#endif

enum SELinux {
    static var enabled: Bool { is_selinux_enabled() > 0 }

    /// Give `path` (not following a symlink) the file context `label`; nothing where SELinux is off.
    static func relabel(_ path: [UInt8], _ label: String) throws {
        guard enabled, !label.isEmpty else { return }
        if Sys.withCString(path, { lsetfilecon($0, label) }) != 0 { throw SystemError("relabel \(label)", path, errno: errno) }
    }
}
