// swift-system's types are part of this module's public API (FilePath, FileDescriptor, Errno).
@_exported import SystemPackage
