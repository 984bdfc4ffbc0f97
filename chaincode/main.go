// Command blockimage-chaincode runs the BlockImage contract as an external chaincode service
// (Fabric's "chaincode as a service"): the peer connects to it at CHAINCODE_SERVER_ADDRESS, and
// CHAINCODE_ID is the package id the peer assigned at install.
package main

import (
	"fmt"
	"os"

	"github.com/hyperledger/fabric-chaincode-go/shim"
	"github.com/hyperledger/fabric-contract-api-go/contractapi"
)

func main() {
	contract := new(BlockImageContract)
	contract.Name = "blockimage"
	cc, err := contractapi.NewChaincode(contract)
	if err != nil {
		fmt.Fprintf(os.Stderr, "blockimage chaincode: %v\n", err)
		os.Exit(1)
	}
	cc.Info.Title = "BlockImage records"
	cc.Info.Version = "1"
	address, id := os.Getenv("CHAINCODE_SERVER_ADDRESS"), os.Getenv("CHAINCODE_ID")
	if address == "" || id == "" {
		fmt.Fprintln(os.Stderr, "blockimage chaincode: set CHAINCODE_SERVER_ADDRESS (host:port) and CHAINCODE_ID (the package id)")
		os.Exit(2)
	}
	server := &shim.ChaincodeServer{
		CCID:     id,
		Address:  address,
		CC:       cc,
		TLSProps: shim.TLSProperties{Disabled: true}, // loopback; the peer's side of TLS is in connection.json
	}
	fmt.Fprintf(os.Stderr, "blockimage chaincode %s listening on %s\n", id, address)
	if err := server.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "blockimage chaincode: %v\n", err)
		os.Exit(1)
	}
}
