/// Deterministic control groups (DOMAIN.md, "Control groups").
public enum ControlGroup {
    /// The member's bucket for a campaign, 0…99: the first 8 bytes of
    /// `sha256("<campaign>:<member>")` as a big-endian unsigned integer, mod 100.
    public static func bucket(campaign: String, member: String) -> Int {
        let digest = SHA256.digest(Array("\(campaign):\(member)".utf8))
        var value: UInt64 = 0
        for byte in digest.prefix(8) { value = value << 8 | UInt64(byte) }
        return Int(value % 100)
    }

    /// Whether the member is held out of a campaign whose control share is `sharePercent`.
    public static func isControl(campaign: String, member: String, sharePercent: Int) -> Bool {
        sharePercent > 0 && bucket(campaign: campaign, member: member) < sharePercent
    }
}
