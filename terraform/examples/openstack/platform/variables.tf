variable "cluster_state" {
  description = "Path of stage 1's state (the root one folder up), read for the Nomad address, ports, buckets and the clients' addresses. With a remote backend there, change the terraform_remote_state block in main.tf to it."
  type        = string
  default     = "../terraform.tfstate"
}

variable "nomad_token" {
  description = "Nomad ACL token for the Nomad provider (with acl_enabled in stage 1; null without ACLs). Passed in, e.g. TF_VAR_nomad_token; not stored in the state."
  type        = string
  default     = null
  sensitive   = true
}

variable "image" {
  description = "qufop image of the builder, gateway and scaler; it must be on every client (terraform/README.md loads it with docker save | ssh ... docker load)."
  type        = string
  default     = "qufop/qufop:dev"
}

variable "registry_image" {
  description = "Image of the registry job. The cloud's machines reach Docker Hub, so the upstream registry by default (Nomad pulls an image that is missing)."
  type        = string
  default     = "registry:2.8.3"
}

variable "registry_entrypoint" {
  description = "Registry program and serve verb inside registry_image (the upstream image's; null for local/docker-registry:2.8's)."
  type        = list(string)
  default     = ["registry", "serve"]
}

variable "ufop_network" {
  description = "Docker network of the UFOP instances, made on every client beforehand (Isolation in jobspecs/README.md). Empty: Docker's default bridge, which does not isolate them."
  type        = string
  default     = ""
}

variable "admin_keys" {
  description = "The platform's admin keys (access_key, secret_key), stored as the Nomad Variable the builder reads. null: the builder generates its own (read them with nomad alloc fs). They are in this stage's state, as every nomad_variable's items are: keep it private."
  type = object({
    access_key = string
    secret_key = string
  })
  default   = null
  sensitive = true
}
