package passkey

import "github.com/google/uuid"

// providers names the passkey providers people recognise, by AAGUID (the
// authenticator model ID in the attested credential data, WebAuthn L3
// §6.5.1), so that a list of passkeys says "iCloud Keychain" rather than a UUID.
var providers = map[uuid.UUID]string{
	uuid.MustParse("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"): "Google Password Manager",
	uuid.MustParse("adce0002-35bc-c60a-648b-0b25f1f05503"): "Chrome on Mac",
	uuid.MustParse("fbfc3007-154e-4ecc-8c0b-6e020557d7bd"): "iCloud Keychain",
	uuid.MustParse("dd4ec289-e01d-41c9-bb89-70fa845d4bf2"): "iCloud Keychain (managed)",
	uuid.MustParse("bada5566-a7aa-401f-bd96-45619a55120d"): "1Password",
	uuid.MustParse("d548826e-79b4-db40-a3d8-11116f7e8349"): "Bitwarden",
	uuid.MustParse("531126d6-e717-415c-9320-3d9aa6981239"): "Dashlane",
	uuid.MustParse("53414d53-554e-4700-0000-000000000000"): "Samsung Pass",
	uuid.MustParse("08987058-cadc-4b81-b6e1-30de50dcbe96"): "Windows Hello",
	uuid.MustParse("9ddd1817-af5a-4672-a2b9-3e3dd95000a9"): "Windows Hello",
	uuid.MustParse("6028b017-b1d4-4c02-b4b3-afcdafc96bb2"): "Windows Hello",
	uuid.MustParse("ee882879-721c-4913-9775-3dfcce97072a"): "YubiKey 5",
	uuid.MustParse("01020304-0506-0708-0102-030405060708"): "Chromium virtual authenticator",
}

// ProviderName names the provider of an AAGUID, or "Passkey" when unknown
// (including the all-zero AAGUID that attestation "none" may carry).
func ProviderName(aaguid []byte) string {
	u, err := uuid.FromBytes(aaguid)
	if err != nil {
		return "Passkey"
	}
	if n, ok := providers[u]; ok {
		return n
	}
	return "Passkey"
}
