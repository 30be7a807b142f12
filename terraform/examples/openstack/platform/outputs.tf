output "gateway_urls" {
  description = "Every gateway (http://<client>:<port>): processing URLs are <url>/<bucket>/<key>?<fop>."
  value       = module.platform.gateway_urls
}

output "gateway_url" {
  description = "The first gateway."
  value       = module.platform.gateway_url
}

output "management_url" {
  description = "The management API (QUFOP_ADDR of the CLI, endpoint of the qufop provider)."
  value       = module.platform.management_url
}

output "registry_address" {
  description = "host:port of the cluster's registry (UFOP images)."
  value       = module.platform.registry_address
}

output "admin_keys_variable" {
  description = "The Nomad Variable holding the admin keys (null when the builder generated its own)."
  value       = module.platform.admin_keys_variable
}
