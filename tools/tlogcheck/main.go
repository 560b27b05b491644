// tlogcheck verifies what cmp's transparency log produced with Go's own
// golang.org/x/mod/sumdb/note (signed notes) and sumdb/tlog (RFC 6962 proofs):
// an implementation nobody on cmp wrote. Input: one JSON file (see tests/api/test_go_verifier.py).
// A record of version 2 commits to each personal value as hex sha256(salt || value);
// a receipt's disclosures (value and hex salt per field) must open those commitments.
// Built offline in GOPATH mode from Debian's golang-golang-x-mod-dev.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	VerifierKey string `json:"verifier_key"`
	Receipts    []struct {
		Record      string   `json:"record"` // base64 of the leaf bytes
		Index       int64    `json:"leaf_index"`
		Checkpoint  string   `json:"checkpoint"`
		Proof       []string `json:"inclusion_proof"`
		Disclosures map[string]struct {
			Value string `json:"value"`
			Salt  string `json:"salt"`
		} `json:"disclosures"`
	} `json:"receipts"`
	Consistency []struct {
		Old, New string
		Proof    []string `json:"consistency_proof"`
	} `json:"consistency"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(1)
}

// open verifies a checkpoint note and returns its tree size and root hash.
func open(v note.Verifiers, text string) (int64, tlog.Hash) {
	n, err := note.Open([]byte(text), v)
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint body has fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	root, err2 := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || err2 != nil || len(root) != tlog.HashSize {
		fail("checkpoint body is malformed")
	}
	var h tlog.Hash
	copy(h[:], root)
	return size, h
}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			fail("proof hash %d is malformed", i)
		}
		copy(out[i][:], b)
	}
	return out
}

func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var in input
	if err := json.Unmarshal(data, &in); err != nil {
		fail("input: %v", err)
	}
	verifier, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	known := note.VerifierList(verifier)
	notes, disclosed := 0, 0
	for i, r := range in.Receipts {
		size, root := open(known, r.Checkpoint)
		notes++
		record, err := base64.StdEncoding.DecodeString(r.Record)
		if err != nil {
			fail("receipt %d: record is not base64", i)
		}
		err = tlog.CheckRecord(hashes(r.Proof), size, root, r.Index, tlog.RecordHash(record))
		if err != nil {
			fail("receipt %d: inclusion proof: %v", i, err)
		}
		var fields map[string]any
		if err := json.Unmarshal(record, &fields); err != nil {
			fail("receipt %d: record is not a JSON object", i)
		}
		for name, d := range r.Disclosures {
			commitment, ok := fields[name+"_sha256"].(string)
			if !ok || fields["v"] != float64(2) {
				fail("receipt %d: %s: the record commits to no such field", i, name)
			}
			salt, err := hex.DecodeString(d.Salt)
			if err != nil || len(salt) != 16 {
				fail("receipt %d: %s_salt is not 16 bytes of hex", i, name)
			}
			sum := sha256.Sum256(append(salt, []byte(d.Value)...))
			if hex.EncodeToString(sum[:]) != commitment {
				fail("receipt %d: %s and %s_salt do not match %s_sha256", i, name, name, name)
			}
			disclosed++
		}
	}
	for i, c := range in.Consistency {
		oldSize, oldRoot := open(known, c.Old)
		newSize, newRoot := open(known, c.New)
		notes += 2
		err := tlog.CheckTree(hashes(c.Proof), newSize, newRoot, oldSize, oldRoot)
		if err != nil {
			fail("consistency %d (%d -> %d): %v", i, oldSize, newSize, err)
		}
	}
	fmt.Printf("go tlog verifier: %d checkpoint signatures, %d inclusion proofs, %d consistency proofs, %d disclosures verified\n",
		notes, len(in.Receipts), len(in.Consistency), disclosed)
}
