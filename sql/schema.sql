-- The film-rental dataset: a small store chain renting films to customers, in the style of the
-- classic sample database. Loading drops and recreates the whole schema, so a load interrupted
-- half-way is simply done again; dataset_info is written last and marks a complete load.
-- Entity keys are AUTO_INCREMENT, as in the classic sample database: a natural INSERT (without
-- the key) gets the next one.
DROP DATABASE IF EXISTS filmdb;
CREATE DATABASE filmdb;
USE filmdb;

CREATE TABLE language (
  language_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(20) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE category (
  category_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(25) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE actor (
  actor_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  first_name VARCHAR(45) NOT NULL,
  last_name VARCHAR(45) NOT NULL,
  KEY idx_actor_last_name (last_name)
) ENGINE = InnoDB;

CREATE TABLE film (
  film_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  title VARCHAR(128) NOT NULL,
  description TEXT,
  release_year SMALLINT UNSIGNED NOT NULL,
  language_id TINYINT UNSIGNED NOT NULL,
  rental_duration TINYINT UNSIGNED NOT NULL,
  rental_rate DECIMAL(4,2) NOT NULL,
  length SMALLINT UNSIGNED NOT NULL,
  replacement_cost DECIMAL(5,2) NOT NULL,
  rating ENUM('G','PG','PG-13','R','NC-17') NOT NULL,
  KEY idx_film_title (title),
  CONSTRAINT fk_film_language FOREIGN KEY (language_id) REFERENCES language (language_id)
) ENGINE = InnoDB;

CREATE TABLE film_actor (
  actor_id INT UNSIGNED NOT NULL,
  film_id INT UNSIGNED NOT NULL,
  PRIMARY KEY (actor_id, film_id),
  KEY idx_film_actor_film (film_id),
  CONSTRAINT fk_film_actor_actor FOREIGN KEY (actor_id) REFERENCES actor (actor_id),
  CONSTRAINT fk_film_actor_film FOREIGN KEY (film_id) REFERENCES film (film_id)
) ENGINE = InnoDB;

CREATE TABLE film_category (
  film_id INT UNSIGNED NOT NULL,
  category_id TINYINT UNSIGNED NOT NULL,
  PRIMARY KEY (film_id, category_id),
  CONSTRAINT fk_film_category_film FOREIGN KEY (film_id) REFERENCES film (film_id),
  CONSTRAINT fk_film_category_category FOREIGN KEY (category_id) REFERENCES category (category_id)
) ENGINE = InnoDB;

CREATE TABLE store (
  store_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  city VARCHAR(50) NOT NULL
) ENGINE = InnoDB;

CREATE TABLE customer (
  customer_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  store_id TINYINT UNSIGNED NOT NULL,
  first_name VARCHAR(45) NOT NULL,
  last_name VARCHAR(45) NOT NULL,
  email VARCHAR(100) NOT NULL,
  active BOOLEAN NOT NULL,
  create_date DATETIME NOT NULL,
  KEY idx_customer_last_name (last_name),
  CONSTRAINT fk_customer_store FOREIGN KEY (store_id) REFERENCES store (store_id)
) ENGINE = InnoDB;

CREATE TABLE inventory (
  inventory_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  film_id INT UNSIGNED NOT NULL,
  store_id TINYINT UNSIGNED NOT NULL,
  KEY idx_inventory_film_store (film_id, store_id),
  CONSTRAINT fk_inventory_film FOREIGN KEY (film_id) REFERENCES film (film_id),
  CONSTRAINT fk_inventory_store FOREIGN KEY (store_id) REFERENCES store (store_id)
) ENGINE = InnoDB;

CREATE TABLE rental (
  rental_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  rental_date DATETIME NOT NULL,
  inventory_id INT UNSIGNED NOT NULL,
  customer_id INT UNSIGNED NOT NULL,
  return_date DATETIME NULL,
  KEY idx_rental_customer (customer_id),
  KEY idx_rental_inventory (inventory_id),
  CONSTRAINT fk_rental_inventory FOREIGN KEY (inventory_id) REFERENCES inventory (inventory_id),
  CONSTRAINT fk_rental_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id)
) ENGINE = InnoDB;

CREATE TABLE payment (
  payment_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL,
  rental_id INT UNSIGNED NOT NULL,
  amount DECIMAL(5,2) NOT NULL,
  payment_date DATETIME NOT NULL,
  KEY idx_payment_customer (customer_id),
  CONSTRAINT fk_payment_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id),
  CONSTRAINT fk_payment_rental FOREIGN KEY (rental_id) REFERENCES rental (rental_id)
) ENGINE = InnoDB;

-- One row, written after everything else: the load is complete and of this size.
CREATE TABLE dataset_info (
  scale INT UNSIGNED NOT NULL,
  generator_version INT UNSIGNED NOT NULL,
  loaded_at DATETIME NOT NULL
) ENGINE = InnoDB;
