variable "name" {
  description = "The UFOP's name: the first word of its processing commands (?<name>/md5)."
  type        = string
  default     = "my-demo"
}

variable "source_path" {
  description = "The UFOP's source: a folder with ufop.yaml at its root, or a tarball (terraform/README.md makes ./demo from examples/ufop-demo)."
  type        = string
  default     = "demo"
}

variable "instances" {
  description = "Instances to run (0 stops them)."
  type        = number
  default     = 2
}
