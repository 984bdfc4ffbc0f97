package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/shim"
	"github.com/hyperledger/fabric-contract-api-go/contractapi"
)

// Keys. Records, the SHA-256 and owner indexes and events are composite keys; logKey is written
// blindly (never read inside a transaction) by every registration, so concurrent registrations
// do not conflict on it, and its key history (GetHistoryForKey) is the log of registrations in
// commit order.
const (
	recordObject = "record"
	shaObject    = "sha256"
	ownerObject  = "owner"
	eventObject  = "event"
	logKey       = "log"
)

// MaxClockSkew bounds how far a record's time may be from the endorsing peer's clock.
const MaxClockSkew = 5 * time.Minute

var (
	recordIDRe = regexp.MustCompile(`^[0-9a-f]{16}$`)
	hex64Re    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hex128Re   = regexp.MustCompile(`^[0-9a-f]{128}$`)
	cidRe      = regexp.MustCompile(`^b[a-z2-7]{20,}$`)
)

// BlockImageContract keeps signed image records: validation on write, queries on read.
type BlockImageContract struct {
	contractapi.Contract
}

// Registered is what RegisterRecord and AddEvent return.
type Registered struct {
	RecordID  string `json:"record_id"`
	TxID      string `json:"tx_id"`
	Timestamp string `json:"timestamp"`
}

// Write is one transaction that wrote a key, from the key's history.
type Write struct {
	TxID      string `json:"tx_id"`
	Timestamp string `json:"timestamp"`
}

func txTime(stub shim.ChaincodeStubInterface) (time.Time, error) {
	ts, err := stub.GetTxTimestamp()
	if err != nil {
		return time.Time{}, err
	}
	return ts.AsTime().UTC(), nil
}

func rfc3339(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func stringField(r map[string]interface{}, name string, re *regexp.Regexp) (string, error) {
	v, ok := r[name].(string)
	if !ok {
		return "", fmt.Errorf("field %q is missing or not a string", name)
	}
	if re != nil && !re.MatchString(v) {
		return "", fmt.Errorf("field %q has the wrong form: %q", name, v)
	}
	return v, nil
}

func intField(r map[string]interface{}, name string, min, max int64) error {
	n, ok := r[name].(json.Number)
	if !ok {
		return fmt.Errorf("field %q is missing or not a number", name)
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v < min || v > max {
		return fmt.Errorf("field %q must be an integer in [%d, %d], got %s", name, min, max, n)
	}
	return nil
}

// checkSignature verifies the Ed25519 signature under keyField over the canonical JSON of doc
// without its "signature" field.
func checkSignature(doc map[string]interface{}, keyField string) error {
	keyHex, err := stringField(doc, keyField, hex64Re)
	if err != nil {
		return err
	}
	sigHex, err := stringField(doc, "signature", hex128Re)
	if err != nil {
		return err
	}
	unsigned := make(map[string]interface{}, len(doc))
	for k, v := range doc {
		if k != "signature" {
			unsigned[k] = v
		}
	}
	message, err := canonicalJSON(unsigned)
	if err != nil {
		return err
	}
	key, _ := hex.DecodeString(keyHex)
	sig, _ := hex.DecodeString(sigHex)
	if !ed25519.Verify(ed25519.PublicKey(key), message, sig) {
		return fmt.Errorf("the Ed25519 signature does not verify against %s %s…", keyField, keyHex[:16])
	}
	return nil
}

// validateRecord checks the record's form and its owner's signature; it returns the id.
func validateRecord(r map[string]interface{}) (string, error) {
	id, err := stringField(r, "record_id", recordIDRe)
	if err != nil {
		return "", err
	}
	owner, err := stringField(r, "owner", nil)
	if err != nil {
		return "", err
	}
	if owner == "" || len(owner) > 256 {
		return "", fmt.Errorf("field \"owner\" must be 1 to 256 bytes")
	}
	for _, name := range []string{"sha256_file", "sha256_pixels", "original_sha256_file", "pdq"} {
		if _, err := stringField(r, name, hex64Re); err != nil {
			return "", err
		}
	}
	if _, err := stringField(r, "cid", cidRe); err != nil {
		return "", err
	}
	if _, err := stringField(r, "media_type", nil); err != nil {
		return "", err
	}
	if _, err := stringField(r, "created_at", nil); err != nil {
		return "", err
	}
	if err := intField(r, "pdq_quality", 0, 100); err != nil {
		return "", err
	}
	for _, name := range []string{"width", "height"} {
		if err := intField(r, name, 1, 1<<31-1); err != nil {
			return "", err
		}
	}
	if _, ok := r["tags"].([]interface{}); !ok {
		return "", fmt.Errorf("field \"tags\" is missing or not a list")
	}
	if wm, present := r["watermark"]; !present {
		return "", fmt.Errorf("field \"watermark\" is missing")
	} else if _, ok := wm.(map[string]interface{}); wm != nil && !ok {
		return "", fmt.Errorf("field \"watermark\" must be an object or null")
	}
	if parent, present := r["parent"]; !present {
		return "", fmt.Errorf("field \"parent\" is missing")
	} else if parent != nil {
		if _, err := stringField(r, "parent", recordIDRe); err != nil {
			return "", err
		}
	}
	if err := checkSignature(r, "owner_key"); err != nil {
		return "", fmt.Errorf("record %s: %v", id, err)
	}
	return id, nil
}

// RegisterRecord validates a signed record and stores it with its indexes. The record's
// created_at must be the transaction's timestamp (to the second), and that timestamp must be
// within MaxClockSkew of the endorsing peer's clock.
func (c *BlockImageContract) RegisterRecord(ctx contractapi.TransactionContextInterface, recordJSON string) (*Registered, error) {
	stub := ctx.GetStub()
	leaf := []byte(recordJSON)
	record, err := parseCanonical(leaf)
	if err != nil {
		return nil, invalid(err)
	}
	id, err := validateRecord(record)
	if err != nil {
		return nil, invalid(err)
	}
	when, err := txTime(stub)
	if err != nil {
		return nil, err
	}
	if record["created_at"] != rfc3339(when) {
		return nil, refuse(CodeInvalid, "record %s: created_at %v is not the transaction's time %s",
			id, record["created_at"], rfc3339(when))
	}
	if skew := time.Since(when); skew > MaxClockSkew || skew < -MaxClockSkew {
		return nil, refuse(CodeInvalid, "record %s: transaction time %s is %s away from the peer's clock",
			id, rfc3339(when), skew.Round(time.Second))
	}
	key, err := stub.CreateCompositeKey(recordObject, []string{id})
	if err != nil {
		return nil, err
	}
	existing, err := stub.GetState(key)
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, refuse(CodeExists, "record %s already exists", id)
	}
	for _, field := range []string{"sha256_file", "sha256_pixels"} {
		hash := record[field].(string)
		if other, err := contentOwner(stub, hash); err != nil {
			return nil, err
		} else if other != "" {
			return nil, refuse(CodeDuplicateContent, "record %s: content with %s %s is already registered as record %s",
				id, field, hash, other)
		}
	}
	if _, isDerivative := record["parent"].(string); !isDerivative {
		// A second original of registered content: its submitted file is another record's
		// original or registered file.
		original := record["original_sha256_file"].(string)
		if other, err := originalOwner(stub, original); err != nil {
			return nil, err
		} else if other != "" {
			return nil, refuse(CodeDuplicateContent,
				"record %s: its original file %s is already registered as record %s", id, original, other)
		}
	}
	var parent string
	if p, ok := record["parent"].(string); ok {
		parent = p
		parentKey, _ := stub.CreateCompositeKey(recordObject, []string{parent})
		if found, err := stub.GetState(parentKey); err != nil {
			return nil, err
		} else if found == nil {
			return nil, refuse(CodeNotFound, "record %s: parent record %s does not exist", id, parent)
		}
	}
	if err := stub.PutState(key, leaf); err != nil {
		return nil, err
	}
	for _, field := range []string{"sha256_file", "sha256_pixels", "original_sha256_file"} {
		indexKey, _ := stub.CreateCompositeKey(shaObject, []string{record[field].(string), id})
		if err := stub.PutState(indexKey, []byte(field)); err != nil {
			return nil, err
		}
	}
	ownerKey, _ := stub.CreateCompositeKey(ownerObject, []string{record["owner"].(string), id})
	if err := stub.PutState(ownerKey, []byte{0}); err != nil {
		return nil, err
	}
	if err := stub.PutState(logKey, []byte(id)); err != nil {
		return nil, err
	}
	if parent != "" {
		event := map[string]interface{}{
			"kind": "derivation", "record_id": parent, "child": id,
			"at": rfc3339(when), "tx_id": stub.GetTxID(),
		}
		if err := putEvent(stub, parent, event); err != nil {
			return nil, err
		}
	}
	if err := stub.SetEvent("RecordRegistered", []byte(id)); err != nil {
		return nil, err
	}
	return &Registered{RecordID: id, TxID: stub.GetTxID(), Timestamp: rfc3339(when)}, nil
}

// eachState calls fn with the last attribute and the value of every key under the partial
// composite key (object, attrs...), in key order, until fn returns false or an error.
func eachState(stub shim.ChaincodeStubInterface, object string, attrs []string,
	fn func(last string, value []byte) (bool, error)) error {
	it, err := stub.GetStateByPartialCompositeKey(object, attrs)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return err
		}
		_, parts, err := stub.SplitCompositeKey(kv.Key)
		if err != nil {
			return err
		}
		if more, err := fn(parts[len(parts)-1], kv.Value); err != nil || !more {
			return err
		}
	}
	return nil
}

// contentOwner is the id of a record whose registered file or pixels have this SHA-256, or "".
func contentOwner(stub shim.ChaincodeStubInterface, hash string) (string, error) {
	owner := ""
	err := eachState(stub, shaObject, []string{hash}, func(id string, field []byte) (bool, error) {
		if f := string(field); f == "sha256_file" || f == "sha256_pixels" {
			owner = id
			return false, nil
		}
		return true, nil
	})
	return owner, err
}

// originalOwner is the id of a record whose submitted or registered file has this SHA-256,
// or "".
func originalOwner(stub shim.ChaincodeStubInterface, hash string) (string, error) {
	owner := ""
	err := eachState(stub, shaObject, []string{hash}, func(id string, field []byte) (bool, error) {
		if f := string(field); f == "original_sha256_file" || f == "sha256_file" {
			owner = id
			return false, nil
		}
		return true, nil
	})
	return owner, err
}

func putEvent(stub shim.ChaincodeStubInterface, recordID string, event map[string]interface{}) error {
	data, err := canonicalJSON(event)
	if err != nil {
		return err
	}
	key, err := stub.CreateCompositeKey(eventObject, []string{recordID, stub.GetTxID()})
	if err != nil {
		return err
	}
	return stub.PutState(key, data)
}

func getRecord(stub shim.ChaincodeStubInterface, recordID string) ([]byte, error) {
	if !recordIDRe.MatchString(recordID) {
		return nil, refuse(CodeInvalid, "%q is not a record id (16 lower-case hex digits)", recordID)
	}
	key, _ := stub.CreateCompositeKey(recordObject, []string{recordID})
	data, err := stub.GetState(key)
	if err != nil {
		return nil, err
	}
	if data == nil {
		return nil, refuse(CodeNotFound, "record %s not found", recordID)
	}
	return data, nil
}

// GetRecord returns the record's JSON exactly as registered (the signed leaf).
func (c *BlockImageContract) GetRecord(ctx contractapi.TransactionContextInterface, recordID string) (string, error) {
	data, err := getRecord(ctx.GetStub(), recordID)
	return string(data), err
}

// History is a record's key history (the transaction that wrote it) and its events.
type History struct {
	RecordID string            `json:"record_id"`
	Writes   []Write           `json:"writes"`
	Events   []json.RawMessage `json:"events"`
}

// GetHistory returns the transactions that wrote the record (GetHistoryForKey, oldest first) and
// its events (derivations, transfers, notes) in key order.
func (c *BlockImageContract) GetHistory(ctx contractapi.TransactionContextInterface, recordID string) (string, error) {
	out, err := history(ctx.GetStub(), recordID)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(out)
	return string(data), err
}

func history(stub shim.ChaincodeStubInterface, recordID string) (*History, error) {
	if _, err := getRecord(stub, recordID); err != nil {
		return nil, err
	}
	key, _ := stub.CreateCompositeKey(recordObject, []string{recordID})
	hist, err := stub.GetHistoryForKey(key)
	if err != nil {
		return nil, err
	}
	defer hist.Close()
	out := &History{RecordID: recordID, Writes: []Write{}, Events: []json.RawMessage{}}
	for hist.HasNext() {
		m, err := hist.Next()
		if err != nil {
			return nil, err
		}
		w := Write{TxID: m.TxId, Timestamp: rfc3339(m.Timestamp.AsTime())}
		out.Writes = append([]Write{w}, out.Writes...) // newest first from the peer
	}
	err = eachState(stub, eventObject, []string{recordID}, func(_ string, event []byte) (bool, error) {
		out.Events = append(out.Events, json.RawMessage(event))
		return true, nil
	})
	return out, err
}

func recordsByIndex(stub shim.ChaincodeStubInterface, object string, attrs []string) (string, error) {
	seen := map[string]bool{}
	out := []json.RawMessage{}
	err := eachState(stub, object, attrs, func(id string, _ []byte) (bool, error) {
		if !seen[id] {
			seen[id] = true
			data, err := getRecord(stub, id)
			if err != nil {
				return false, err
			}
			out = append(out, json.RawMessage(data))
		}
		return true, nil
	})
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(out)
	return string(data), err
}

// QueryBySha256 returns the records whose file, pixel or original-file SHA-256 is hash.
func (c *BlockImageContract) QueryBySha256(ctx contractapi.TransactionContextInterface, hash string) (string, error) {
	if !hex64Re.MatchString(hash) {
		return "", refuse(CodeInvalid, "%q is not a SHA-256 (64 lower-case hex digits)", hash)
	}
	return recordsByIndex(ctx.GetStub(), shaObject, []string{hash})
}

// QueryByOwner returns the records registered by owner.
func (c *BlockImageContract) QueryByOwner(ctx contractapi.TransactionContextInterface, owner string) (string, error) {
	return recordsByIndex(ctx.GetStub(), ownerObject, []string{owner})
}

// LogEntry is one registration in commit order.
type LogEntry struct {
	Index  int             `json:"index"`
	TxID   string          `json:"tx_id"`
	Record json.RawMessage `json:"record"`
}

// Log is a page of the registration log.
type Log struct {
	Size    int        `json:"size"`
	Entries []LogEntry `json:"entries"`
}

// ListRecords returns registrations number start .. start+limit-1 in commit order (block, then
// position in block) and the log's size. limit 0 returns the size only.
func (c *BlockImageContract) ListRecords(ctx contractapi.TransactionContextInterface, start int, limit int) (string, error) {
	out, err := listRecords(ctx.GetStub(), start, limit)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(out)
	return string(data), err
}

func listRecords(stub shim.ChaincodeStubInterface, start, limit int) (*Log, error) {
	if start < 0 || limit < 0 {
		return nil, refuse(CodeInvalid, "start and limit must not be negative")
	}
	hist, err := stub.GetHistoryForKey(logKey)
	if err != nil {
		return nil, err
	}
	defer hist.Close()
	type write struct{ id, tx string }
	var newestFirst []write
	for hist.HasNext() {
		m, err := hist.Next()
		if err != nil {
			return nil, err
		}
		newestFirst = append(newestFirst, write{string(m.Value), m.TxId})
	}
	n := len(newestFirst)
	out := &Log{Size: n, Entries: []LogEntry{}}
	for i := start; i < n && i < start+limit; i++ {
		w := newestFirst[n-1-i]
		data, err := getRecord(stub, w.id)
		if err != nil {
			return nil, err
		}
		out.Entries = append(out.Entries, LogEntry{Index: i, TxID: w.tx, Record: json.RawMessage(data)})
	}
	return out, nil
}

// currentOwnerKey is the owner key after the record's transfers (events are in key order, which
// is not time order, so the latest transfer is the one with the greatest "at", then tx id).
func currentOwnerKey(stub shim.ChaincodeStubInterface, recordID string, record map[string]interface{}) (string, error) {
	owner := record["owner_key"].(string)
	latest := ""
	err := eachState(stub, eventObject, []string{recordID}, func(_ string, data []byte) (bool, error) {
		var e map[string]interface{}
		if err := json.Unmarshal(data, &e); err != nil {
			return false, err
		}
		if order := fmt.Sprintf("%v %v", e["at"], e["tx_id"]); e["kind"] == "transfer" && order > latest {
			latest, owner = order, e["to_key"].(string)
		}
		return true, nil
	})
	return owner, err
}

// AddEvent records a signed event about a record: {"kind": "transfer", "to": NAME,
// "to_key": HEX} moves ownership; {"kind": "note", "note": TEXT} annotates. The event must be
// canonical JSON with "record_id", "kind", "signer_key" and "signature", signed (Ed25519, over
// the event without its signature) by the record's current owner. Derivation events are written
// by RegisterRecord itself.
func (c *BlockImageContract) AddEvent(ctx contractapi.TransactionContextInterface, eventJSON string) (*Registered, error) {
	stub := ctx.GetStub()
	event, err := parseCanonical([]byte(eventJSON))
	if err != nil {
		return nil, invalid(err)
	}
	id, err := stringField(event, "record_id", recordIDRe)
	if err != nil {
		return nil, invalid(err)
	}
	data, err := getRecord(stub, id)
	if err != nil {
		return nil, err
	}
	var record map[string]interface{}
	if err := json.Unmarshal(data, &record); err != nil {
		return nil, err
	}
	kind, err := stringField(event, "kind", nil)
	if err != nil {
		return nil, invalid(err)
	}
	switch kind {
	case "transfer":
		if _, err := stringField(event, "to", nil); err != nil {
			return nil, invalid(err)
		}
		if _, err := stringField(event, "to_key", hex64Re); err != nil {
			return nil, invalid(err)
		}
	case "note":
		if _, err := stringField(event, "note", nil); err != nil {
			return nil, invalid(err)
		}
	default:
		return nil, refuse(CodeInvalid, "event kind %q is not one of transfer, note", kind)
	}
	for _, reserved := range []string{"at", "tx_id"} {
		if _, present := event[reserved]; present {
			return nil, refuse(CodeInvalid, "field %q is set by the ledger, not the client", reserved)
		}
	}
	if err := checkSignature(event, "signer_key"); err != nil {
		return nil, refuse(CodeInvalid, "event on record %s: %v", id, err)
	}
	owner, err := currentOwnerKey(stub, id, record)
	if err != nil {
		return nil, err
	}
	if event["signer_key"] != owner {
		return nil, refuse(CodeForbidden, "event on record %s is not signed by its current owner", id)
	}
	when, err := txTime(stub)
	if err != nil {
		return nil, err
	}
	event["at"] = rfc3339(when)
	event["tx_id"] = stub.GetTxID()
	if err := putEvent(stub, id, event); err != nil {
		return nil, err
	}
	return &Registered{RecordID: id, TxID: stub.GetTxID(), Timestamp: rfc3339(when)}, nil
}
