// Package deploy holds the deployment files of keyway; its test keeps docs/deploy.md's snippets equal to them.
package deploy
