// Command evidence-check verifies a BlockImage receipt with independent Go implementations of
// the formats it uses, and no BlockImage code: golang.org/x/mod/sumdb/note for the signed
// checkpoint, github.com/transparency-dev/formats for its body, github.com/transparency-dev/merkle
// for the RFC 9162 inclusion and consistency proofs, and github.com/gowebpki/jcs for the RFC 8785
// bytes the owner signed (records of format version 2).
//
//	evidence-check -log-key KEY RECEIPT.json [CHECKPOINT.txt CONSISTENCY.json]
//
// KEY is the log's verifier key (`blockimage log-key`). With the two optional files (the latest
// checkpoint, `blockimage checkpoint`, and `blockimage consistency OLD_SIZE --json`) it also checks
// that the log today extends the receipt's tree. Prints one line per check; exit 1 on a failure.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

type receipt struct {
	Log struct {
		LeafIndex     uint64   `json:"leaf_index"`
		TreeSize      uint64   `json:"tree_size"`
		InclusionPath []string `json:"inclusion_path"`
		Leaf          string   `json:"leaf"`
		Checkpoint    string   `json:"checkpoint"`
	} `json:"log"`
}

type consistency struct {
	OldSize uint64   `json:"old_size"`
	NewSize uint64   `json:"new_size"`
	Proof   []string `json:"proof"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func readJSON(path string, into interface{}) {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		fail("%s: %v", path, err)
	}
}

func hashes(hexes []string) [][]byte {
	out := make([][]byte, len(hexes))
	for i, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			fail("proof hash %d is not 32 bytes of hex", i)
		}
		out[i] = b
	}
	return out
}

// openCheckpoint verifies a signed note with the log's key and parses its checkpoint body.
func openCheckpoint(text string, verifier note.Verifier) *log.Checkpoint {
	n, err := note.Open([]byte(text), note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	cp := &log.Checkpoint{}
	if _, err := cp.Unmarshal([]byte(n.Text)); err != nil {
		fail("checkpoint body: %v", err)
	}
	if cp.Origin != verifier.Name() {
		fail("checkpoint is for log %q, the key is %q's", cp.Origin, verifier.Name())
	}
	return cp
}

// checkOwnerSignature verifies the owner's Ed25519 signature over the RFC 8785 bytes of the
// record without its signature field, and that the leaf is itself in RFC 8785 form.
func checkOwnerSignature(leaf []byte) string {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(leaf, &fields); err != nil {
		fail("leaf is not a JSON object: %v", err)
	}
	if _, ok := fields["version"]; !ok {
		return "owner signature: a version 1 record (Python json.dumps bytes, before RFC 8785): not checked here"
	}
	canonical, err := jcs.Transform(leaf)
	if err != nil || string(canonical) != string(leaf) {
		fail("the leaf is not in RFC 8785 form")
	}
	var key, sig string
	if json.Unmarshal(fields["owner_key"], &key) != nil || json.Unmarshal(fields["signature"], &sig) != nil {
		fail("the record has no owner_key or signature string")
	}
	delete(fields, "signature")
	unsigned, err := json.Marshal(fields)
	if err != nil {
		fail("%v", err)
	}
	message, err := jcs.Transform(unsigned)
	if err != nil {
		fail("record without signature: %v", err)
	}
	pub, err1 := hex.DecodeString(key)
	raw, err2 := hex.DecodeString(sig)
	if err1 != nil || err2 != nil || len(pub) != ed25519.PublicKeySize {
		fail("owner_key or signature is not hex of the right length")
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), message, raw) {
		fail("owner signature does not verify over the RFC 8785 bytes")
	}
	return fmt.Sprintf("owner signature: valid over the RFC 8785 bytes (key %s)", key)
}

func main() {
	logKey := flag.String("log-key", "", "the log's verifier key (blockimage log-key)")
	flag.Parse()
	if *logKey == "" || (flag.NArg() != 1 && flag.NArg() != 3) {
		fmt.Fprintln(os.Stderr, "usage: evidence-check -log-key KEY RECEIPT.json [CHECKPOINT.txt CONSISTENCY.json]")
		os.Exit(2)
	}
	verifier, err := note.NewVerifier(*logKey)
	if err != nil {
		fail("log key: %v", err)
	}
	var r receipt
	readJSON(flag.Arg(0), &r)
	leaf, err := base64.StdEncoding.DecodeString(r.Log.Leaf)
	if err != nil {
		fail("leaf is not base64: %v", err)
	}
	fmt.Println(checkOwnerSignature(leaf))
	old := openCheckpoint(r.Log.Checkpoint, verifier)
	if old.Size != r.Log.TreeSize {
		fail("the receipt's proof is for size %d, its checkpoint signs %d", r.Log.TreeSize, old.Size)
	}
	fmt.Printf("checkpoint: signed by %s, size %d\n", verifier.Name(), old.Size)
	hasher := rfc6962.DefaultHasher
	err = proof.VerifyInclusion(hasher, r.Log.LeafIndex, old.Size, hasher.HashLeaf(leaf), hashes(r.Log.InclusionPath), old.Hash)
	if err != nil {
		fail("inclusion proof: %v", err)
	}
	fmt.Printf("inclusion: leaf %d of %d\n", r.Log.LeafIndex, old.Size)
	if flag.NArg() == 3 {
		latest, err := os.ReadFile(flag.Arg(1))
		if err != nil {
			fail("%v", err)
		}
		text := string(latest)
		var doc struct{ Checkpoint string }
		if json.Unmarshal(latest, &doc) == nil && doc.Checkpoint != "" {
			text = doc.Checkpoint // `blockimage checkpoint --json`
		}
		current := openCheckpoint(text, verifier)
		var c consistency
		readJSON(flag.Arg(2), &c)
		if c.OldSize != old.Size || c.NewSize != current.Size {
			fail("the consistency proof is from %d to %d, not from %d to %d", c.OldSize, c.NewSize, old.Size, current.Size)
		}
		err = proof.VerifyConsistency(hasher, old.Size, current.Size, hashes(c.Proof), old.Hash, current.Hash)
		if err != nil {
			fail("consistency proof: %v", err)
		}
		fmt.Printf("consistency: the log at size %d extends the receipt's size %d\n", current.Size, old.Size)
	}
	fmt.Println("ok")
}
