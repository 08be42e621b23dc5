// difftool: container-image layers to tar streams and back, on plain directories or a driver's store.
import ArgumentParser
import DiffKitArchive
import DiffKitSystem
import DiffKit
import Drivers
import Logging

#if canImport(Glibc)
import Glibc
#endif

@main
struct Difftool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "difftool",
        abstract: "Turn container-image layers into tar streams and back.",
        discussion: """
            On directories: diff, changes, size, apply, tar.
            On a store (--driver, --home, --storage-opt before or after the command):
            create, import, export, changes ID, size ID, mount, umount, rm, ls, status, metadata.
            On an engine's own store, read-only (--adopt docker:PATH or containers:PATH):
            ls, changes ID, size ID, export, mount, umount; migrate --from-adopt.
            """,
        subcommands: [
            DiffCommand.self, ChangesCommand.self, SizeCommand.self, ApplyCommand.self, TarCommand.self,
            CreateCommand.self, ImportCommand.self, ExportCommand.self, MountCommand.self, UmountCommand.self,
            RmCommand.self, LsCommand.self, StatusCommand.self, MetadataCommand.self, UsageCommand.self,
            MigrateCommand.self, ImportImageCommand.self, ExportImageCommand.self, ConformanceCommand.self,
        ])

    static func main() {
        LoggingSystem.bootstrap { _ in StderrLogHandler() }
        var command: any ParsableCommand
        do {
            command = try parseAsRoot(hoistingStoreOptions(Array(CommandLine.arguments.dropFirst())))
        } catch {
            // A bad command line (or --help): ArgumentParser's message and usage, exit 64 (0).
            exit(withError: error)
        }
        do {
            try command.run()
        } catch {
            fail(error)
        }
    }

    /// The contract puts store options before the command (`difftool --home H import ID`);
    /// ArgumentParser wants a subcommand's options after its name, so leading ones move there.
    static func hoistingStoreOptions(_ args: [String]) -> [String] {
        let takesValue: Set<String> = ["--driver", "--home", "--storage-opt", "--adopt", "--adopt-driver"]
        var leading: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if takesValue.contains(a), i + 1 < args.count {
                leading += [a, args[i + 1]]
                i += 2
            } else if let eq = a.firstIndex(of: "="), takesValue.contains(String(a[..<eq])) {
                leading.append(a)
                i += 1
            } else {
                break
            }
        }
        guard !leading.isEmpty, i < args.count else { return args }
        return [args[i]] + leading + args[(i + 1)...]
    }

    /// The one error handler: whatever a command throws ends here. A half-written `-o` file is
    /// removed; ArgumentParser's own errors (`ValidationError` from `validate` or `run`, an
    /// `ExitCode` a command chose, `--help`) are reported as it reports them (a usage error
    /// exits 64); every other error is one line naming the file or entry (the libraries' errors
    /// and `CLIError` say which), exit 1.
    static func fail(_ error: any Error) -> Never {
        FileOutput.cleanupPending()
        if isArgumentParsers(error) { exit(withError: error) }
        writeStderr("difftool: error: \(error)\n")
        Glibc.exit(1)
    }

    /// An error of ArgumentParser's: its public ones, and the internal one its help command throws.
    static func isArgumentParsers(_ error: any Error) -> Bool {
        error is ValidationError || error is ExitCode || error is CleanExit
            || String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
    }
}

/// A failure the command line itself finds: its message names the file or the option.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { _ = try? Sys.writeAll(2, UnsafeRawBufferPointer($0), shown: "stderr") }
}

func writeStdout(_ s: String) throws {
    var s = s
    try s.withUTF8 { try Sys.writeAll(1, UnsafeRawBufferPointer($0), shown: "stdout") }
}

/// Warnings as one line each on stderr.
struct StderrLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .warning
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        writeStderr("difftool: \(event.level): \(event.message)\n")
    }
}
