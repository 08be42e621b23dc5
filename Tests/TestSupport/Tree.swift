import DiffKit
