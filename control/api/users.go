package api

import "time"

// NewUserRequest is the body of POST /v1/users.
type NewUserRequest struct {
	Name  string `json:"name"`
	Class string `json:"class"` // free (the default) or paid
}

// Keys is a user's new key pair: the answer of POST /v1/users and of POST
// /v1/users/NAME/keys, the only times the secret key is shown.
type Keys struct {
	Name      string `json:"name"`
	Class     string `json:"class,omitempty"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// Limits are admission limits (PUT /v1/users/NAME/limits, PUT
// /v1/classes/CLASS/limits). A zero field is not set: a user's falls back
// to its class's, a class's to no limit.
type Limits struct {
	RPS      float64        `json:"rps"`
	Burst    int            `json:"burst"`
	Commands map[string]int `json:"commands,omitempty"`
}

// User is a user as GET /v1/users lists it: no secret key.
type User struct {
	Name      string    `json:"name"`
	Class     string    `json:"class"`
	AccessKey string    `json:"access_key"`
	Limits    Limits    `json:"limits"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// UserDeleted is the answer of DELETE /v1/users/NAME.
type UserDeleted struct {
	Name string `json:"name"`
}

// ClassLimits is the answer of PUT /v1/classes/CLASS/limits.
type ClassLimits struct {
	Class  string `json:"class"`
	Limits Limits `json:"limits"`
}
