// perses-check-config CONFIG: read a Perses config file the way the server does, and exit non-zero
// with the reason if the server would refuse it. The perses role runs it as the `validate:` step of
// config.yaml, so a config the server refuses never replaces the live one. Built inside the Perses
// module by `make bootstrap` (toolchain/gotools.py), so it uses the server's own config package.
package main

import (
	"fmt"
	"os"

	"github.com/perses/common/config"
	apiConfig "github.com/perses/perses/pkg/model/api/config"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: perses-check-config CONFIG.yaml")
		os.Exit(2)
	}
	file := os.Args[1]
	c := apiConfig.Config{}
	// The resolver the server uses (strict: a misspelt key is an error), without its PERSES_* environment
	// overrides, so the file alone is judged.
	err := config.NewResolver[apiConfig.Config]().SetConfigFile(file).Resolve(&c).Verify()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: refused: %v\n", file, err)
		os.Exit(1)
	}
	// The server loads its plugins' CUE schemas at start; a missing folder leaves every panel unknown.
	for key, dir := range map[string]string{
		"schemas.panels_path": c.Schemas.PanelsPath, "schemas.queries_path": c.Schemas.QueriesPath,
		"schemas.datasources_path": c.Schemas.DatasourcesPath, "schemas.variables_path": c.Schemas.VariablesPath,
	} {
		if info, statErr := os.Stat(dir); statErr != nil || !info.IsDir() {
			fmt.Fprintf(os.Stderr, "%s: refused: %s: %q is not a folder\n", file, key, dir)
			os.Exit(1)
		}
	}
	if c.Security.EnableAuth && len(c.Security.Authorization.GuestPermissions) > 0 {
		fmt.Fprintf(os.Stderr, "%s: refused: security.authorization.guest_permissions must be empty: "+
			"anonymous users would get them\n", file)
		os.Exit(1)
	}
	fmt.Printf("%s: ok\n", file)
}
