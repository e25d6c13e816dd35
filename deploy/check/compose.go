package check

// composeFile is the subset of the Compose specification that the files in
// deploy/compose use. Decoding is strict: a key not here is an error, so
// a typo cannot pass silently. A file that needs another key adds it here.
type composeFile struct {
	Services map[string]composeService `json:"services"`
	// Volumes are the named volumes; a nil value is a default volume.
	Volumes map[string]*composeVolume `json:"volumes,omitempty"`
}

// composeService is one service. Values stay uninterpolated (${NAME}).
type composeService struct {
	Image string `json:"image"`
	// Command is a list of arguments; a string would be split by a shell.
	Command     []string          `json:"command,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	Environment map[string]string `json:"environment,omitempty"`
	Ports       []string          `json:"ports,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	Tmpfs       []string          `json:"tmpfs,omitempty"`
	DependsOn   []string          `json:"depends_on,omitempty"`
	Restart     string            `json:"restart,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	User        string            `json:"user,omitempty"`
	Deploy      *composeDeploy    `json:"deploy,omitempty"`
}

// composeDeploy holds the replica count, a string before interpolation.
type composeDeploy struct {
	Replicas string `json:"replicas,omitempty"`
}

// composeVolume is a named volume's options; none are used yet.
type composeVolume struct{}
