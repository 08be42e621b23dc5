// RFC 3339 times, as image documents write them (`created` in a config and its history).
#if canImport(Glibc)
import Glibc
#endif

/// RFC 3339 timestamps in UTC.
public enum RFC3339 {
    /// `2006-01-02T15:04:05Z`, or with the fraction Go's time.RFC3339Nano writes (trailing zeros
    /// dropped) when `nanoseconds` is not 0.
    public static func string(seconds: Int64, nanoseconds: Int = 0) -> String {
        var t = time_t(seconds)
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var out = "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))"
        if nanoseconds != 0 {
            var frac = pad(Int32(nanoseconds), 9)
            while frac.hasSuffix("0") { frac.removeLast() }
            out += "." + frac
        }
        return out + "Z"
    }
}
