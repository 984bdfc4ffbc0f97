// An independent checker of BlockImage receipts (see main.go); no BlockImage code.
module blockimage.local/tools/evidence-check

go 1.26.0

require (
	github.com/gowebpki/jcs v1.0.2
	github.com/transparency-dev/formats v0.1.1
	github.com/transparency-dev/merkle v0.0.2
	golang.org/x/mod v0.43.0
)
